"""Bundle routes (v1): POST /v1/bundles, GET /v1/bundles/{id}/embedding, POST /v1/bundles/rank,
GET /v1/users/{id}/bundle-recommendations. They answer 404 when the deployment has no bundle
recommender package; users here are the package's users, not the item model's."""

from __future__ import annotations

from typing import Annotated

import numpy as np
from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import Response

from coldproxy.bundle_recommender import VIEW_EXPERTS, VIEWS
from service.bundles import BundleServing, UnknownMembers
from service.http import check_item_id, fast_json, fetch, json_body, rank_in, read_json, top_k_in, unavailable
from service.schemas import BundleEmbeddingOut, BundleIn, BundleOut, BundleRankIn, BundleRankOut, BundleRecommendOut
from service.state import AppState, Live, Serving, access
from service.store import StoreUnavailable

router = APIRouter()


def bundles_of(sv: Serving) -> BundleServing:
    if sv.bundles is None:
        raise HTTPException(404, "this deployment serves no bundle recommender (COLDPROXY_BUNDLE_RECOMMENDER_DIR; "
                                 "build one with `coldproxy train-bundles`)")
    return sv.bundles


@router.post("/v1/bundles", response_model=BundleOut, openapi_extra=json_body(BundleIn), dependencies=[access(write=True)])
async def post_bundle(request: Request, st: AppState, sv: Live) -> BundleOut:
    """A new bundle from its member items: the vector is computed, stored in Redis (with the members)
    and indexed, so the bundle can be fetched and ranked at once. 422 names unknown member items."""
    bs = bundles_of(sv)
    body = await read_json(request, BundleIn, st.settings.max_request_bytes)
    if body.bundle_id in bs.catalog.warm:
        raise HTTPException(409, f"bundle {body.bundle_id} is known to the model: it is served from its interactions")
    if len(body.item_ids) > st.settings.max_bundle_members:
        raise HTTPException(413, f"at most {st.settings.max_bundle_members} member items per bundle")
    try:
        rows = bs.member_rows(body.item_ids)
    except UnknownMembers as exc:
        raise HTTPException(422, {"msg": f"{len(exc.unknown)} member item(s) unknown to bundle recommender {bs.version}",
                                  "unknown_item_ids": exc.unknown}) from exc
    out = await bs.embed([rows])
    emb = out.embedding[0]
    if not np.isfinite(emb).all():
        raise HTTPException(422, "the model produced a non-finite embedding for these members; nothing was stored")
    members = [str(x) for x in bs.rec.arrays["item_ids"][rows]]
    view_w = dict(zip(VIEWS, map(float, out.view_weights[0])))
    experts = {view: dict(zip(VIEW_EXPERTS, map(float, w[0])))
               for view, w in zip(VIEWS, (out.bundle_view_weights, out.item_view_weights))}
    extra = {"members": ",".join(members), "view_weights": ",".join(f"{w:.9g}" for w in view_w.values())}
    try:
        stored = await bs.catalog.put(body.bundle_id, emb, [], body.overwrite, extra)
    except StoreUnavailable as exc:
        raise unavailable(exc) from exc
    if not stored:
        raise HTTPException(409, f"bundle {body.bundle_id} already exists for bundle recommender {bs.version}; "
                                 "send overwrite=true to replace it")
    return BundleOut(bundle_id=body.bundle_id, model_version=bs.version, source="proxy", members=len(rows),
                     view_weights=view_w, expert_weights=experts, embedding=emb.tolist())


@router.get("/v1/bundles/{bundle_id}/embedding", response_model=BundleEmbeddingOut, dependencies=[access(write=False)])
async def get_bundle_embedding(bundle_id: str, sv: Live) -> Response:
    bs = bundles_of(sv)
    check_item_id(bundle_id, "bundle_id")
    emb, source = await fetch(bs.catalog, bundle_id, "bundle")
    return fast_json({"bundle_id": bundle_id, "model_version": bs.version, "source": source, "embedding": emb.tolist()})


@router.post("/v1/bundles/rank", response_model=BundleRankOut, openapi_extra=json_body(BundleRankIn),
             dependencies=[access(write=False)])
async def rank_bundles(request: Request, st: AppState, sv: Live) -> Response:
    bs = bundles_of(sv)
    body = await read_json(request, BundleRankIn, st.settings.max_request_bytes)
    ranked, missing = await rank_in(bs.catalog, body.user_id, body.bundle_ids, st.settings)
    return fast_json({"user_id": body.user_id, "model_version": bs.version, "missing": missing,
                      "scores": [{"bundle_id": b, "score": sc, "source": src} for b, sc, src in ranked]})


@router.get("/v1/users/{user_id}/bundle-recommendations", response_model=BundleRecommendOut,
            dependencies=[access(write=False)])
async def recommend_bundles(user_id: str, st: AppState, sv: Live, k: Annotated[int, Query(ge=1)] = 10) -> Response:
    bs = bundles_of(sv)
    hits = top_k_in(bs.catalog, user_id, k, st.settings)
    return fast_json({"user_id": user_id, "model_version": bs.version,
                      "bundles": [{"bundle_id": b, "score": sc, "source": src} for b, sc, src in hits]})
