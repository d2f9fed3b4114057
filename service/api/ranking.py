"""Item ranking routes (v1): POST /v1/rank (score a user's candidates) and GET
/v1/users/{id}/recommendations (FAISS top-k over warm and new items). Canary users (COLDPROXY_CANARY_FRACTION)
are answered by the candidate package; every answer names the version that made it."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from service.api.http import fast_json, json_body, rank_in, read_json, top_k_in
from service.schemas import RankIn, RankOut, RecommendOut
from service.state import READ, AppState, access

router = APIRouter()


@router.post("/v1/rank", response_model=RankOut, openapi_extra=json_body(RankIn), dependencies=[access(READ)])
async def rank(request: Request, st: AppState) -> Response:
    body = await read_json(request, RankIn, st.settings.max_request_bytes)
    sv = st.serving_for(body.user_id)  # one package for the whole request: never two ID spaces in one ranking
    ranked, missing = await rank_in(sv.items, body.user_id, body.item_ids, st.settings)
    st.metrics.answers.labels("rank", sv.version).inc()
    return fast_json({"user_id": body.user_id, "bundle_version": sv.version, "missing": missing,
                      "scores": [{"item_id": i, "score": sc, "source": src} for i, sc, src in ranked]})


@router.get("/v1/users/{user_id}/recommendations", response_model=RecommendOut, dependencies=[access(READ)])
async def recommend(user_id: str, st: AppState, k: Annotated[int, Query(ge=1)] = 10) -> Response:
    sv = st.serving_for(user_id)
    hits = top_k_in(sv.items, user_id, k, st.settings)
    st.metrics.answers.labels("recommend", sv.version).inc()
    return fast_json({"user_id": user_id, "bundle_version": sv.version,
                      "items": [{"item_id": i, "score": sc, "source": src} for i, sc, src in hits]})
