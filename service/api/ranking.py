"""Item ranking routes (v1): POST /v1/rank (score a user's candidates) and GET
/v1/users/{id}/recommendations (FAISS top-k over warm and new items)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from service.api.http import fast_json, json_body, rank_in, read_json, top_k_in
from service.schemas import RankIn, RankOut, RecommendOut
from service.state import READ, AppState, Live, access

router = APIRouter()


@router.post("/v1/rank", response_model=RankOut, openapi_extra=json_body(RankIn), dependencies=[access(READ)])
async def rank(request: Request, st: AppState, sv: Live) -> Response:
    body = await read_json(request, RankIn, st.settings.max_request_bytes)
    ranked, missing = await rank_in(sv.items, body.user_id, body.item_ids, st.settings)
    return fast_json({"user_id": body.user_id, "bundle_version": sv.version, "missing": missing,
                      "scores": [{"item_id": i, "score": sc, "source": src} for i, sc, src in ranked]})


@router.get("/v1/users/{user_id}/recommendations", response_model=RecommendOut, dependencies=[access(READ)])
async def recommend(user_id: str, st: AppState, sv: Live, k: Annotated[int, Query(ge=1)] = 10) -> Response:
    hits = top_k_in(sv.items, user_id, k, st.settings)
    return fast_json({"user_id": user_id, "bundle_version": sv.version,
                      "items": [{"item_id": i, "score": sc, "source": src} for i, sc, src in hits]})
