"""Bundle routes (v1): POST /v1/bundles, GET /v1/bundles/{id}/embedding, POST /v1/bundles/rank,
GET /v1/users/{id}/bundle-recommendations. They answer 404 when the deployment has no bundle model
package; users here are the package's users, not the item model's. The write path is
``service.bundle_serving``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from coldproxy.bundle_protocol import (
    BundleEmbeddingOut,
    BundleIn,
    BundleOut,
    BundleRankIn,
    BundleRankOut,
    BundleRecommendIn,
    BundleRecommendOut,
    bundle_versions,
)
from coldproxy.errors import NotFound, Unavailable
from coldproxy.ids import check_id
from coldproxy.protocol import RecommendFilters, UserQuery
from service import bundle_wait, reads
from service.api.deps import READ, WRITE, AppState, Live, access, check_private_read
from service.api.http import fast_json, json_body, read_json
from service.bundle_serving import BundleServing
from service.serving import Serving

router = APIRouter()


def bundles_of(sv: Serving, st: AppState) -> BundleServing:
    if sv.bundles is None:
        wait = bundle_wait.waiting(st)
        if wait is not None:  # `coldproxy up` is training it in the background
            raise Unavailable(*wait)
        raise NotFound(
            "this deployment serves no bundle recommender (COLDPROXY_BUNDLES_PACKAGE_DIR; "
            "build one with `coldproxy train-bundles`)"
        )
    return sv.bundles


@router.post("/v1/bundles", response_model=BundleOut, openapi_extra=json_body(BundleIn), dependencies=[access(WRITE)])
async def post_bundle(request: Request, st: AppState, sv: Live) -> BundleOut:
    """A new bundle from its member items: the vector is computed, stored in Redis (with the members)
    and indexed, so the bundle can be fetched and ranked at once. 422 names unknown member items."""
    bundles = bundles_of(sv, st)
    body = await read_json(request, BundleIn)
    out = await bundles.create(body.bundle_id, body.item_ids, body.overwrite, st.settings.max_bundle_members)
    if sv.shadow is not None:  # a package being rolled out with another bundle recommender gets it too
        await sv.shadow.write_bundle(body.bundle_id, body.item_ids, body.overwrite, st.settings.max_bundle_members)
    return out


@router.get("/v1/bundles/{bundle_id}/embedding", response_model=BundleEmbeddingOut, dependencies=[access(READ)])
async def get_bundle_embedding(bundle_id: str, st: AppState, sv: Live) -> Response:
    bundles = bundles_of(sv, st)
    check_id(bundle_id, "bundle_id")
    emb, source = await reads.fetch(bundles.catalog, bundle_id, "bundle")
    return fast_json(
        {"bundle_id": bundle_id, **bundle_versions(bundles.version), "source": source, "embedding": emb.tolist()}
    )


@router.post(
    "/v1/bundles/rank", response_model=BundleRankOut, openapi_extra=json_body(BundleRankIn), dependencies=[access(READ)]
)
async def rank_bundles(request: Request, st: AppState, sv: Live) -> Response:
    bundles = bundles_of(sv, st)
    body = await read_json(request, BundleRankIn)
    scores, missing = await reads.rank(
        st, bundles.catalog, body, body.bundle_ids, lambda b, sc, src: {"bundle_id": b, "score": sc, "source": src}
    )
    return fast_json(
        {"user_id": body.user_id, **bundle_versions(bundles.version), "missing": missing, "scores": scores}
    )


async def bundle_recommendations(
    request: Request,
    st: AppState,
    sv: Serving,
    query: UserQuery,
    k: int,
    filters: RecommendFilters,
    exclude_ids: list[str] = (),
) -> Response:
    if query.user_id is not None and not filters.exclude_seen:
        check_private_read(request, st)
    bundles = bundles_of(sv, st)
    hits = await reads.top_k(st, bundles.catalog, query, k, filters, exclude_ids)
    return fast_json(
        {
            "user_id": query.user_id,
            **bundle_versions(bundles.version),
            "bundles": [{"bundle_id": b, "score": sc, "source": src} for b, sc, src in hits],
        }
    )


@router.post(
    "/v1/bundles/recommendations",
    response_model=BundleRecommendOut,
    openapi_extra=json_body(BundleRecommendIn),
    dependencies=[access(READ)],
)
async def recommend_bundles_post(request: Request, st: AppState, sv: Live) -> Response:
    """The k best bundles for a user ID or a user vector of the bundle package's space (its own users' form,
    which ends in the placement terms: see docs/bundles.md); id_space names that package's version. The
    filters are those of ``POST /v1/recommendations``: by default none of the user's training bundles."""
    body = await read_json(request, BundleRecommendIn)
    return await bundle_recommendations(request, st, sv, body, body.k, body, body.exclude_ids)


@router.get(
    "/v1/users/{user_id}/bundle-recommendations", response_model=BundleRecommendOut, dependencies=[access(READ)]
)
async def recommend_bundles(
    user_id: str,
    request: Request,
    st: AppState,
    sv: Live,
    filters: Annotated[RecommendFilters, Query()],
    k: Annotated[int, Query(ge=1)] = 10,
) -> Response:
    query = UserQuery.model_construct(user_id=user_id, user_embedding=None, id_space=None)
    return await bundle_recommendations(request, st, sv, query, k, filters)


@router.delete(
    "/v1/bundles/{bundle_id}",
    status_code=204,
    dependencies=[access(WRITE)],
    responses={404: {"description": "no such bundle, or already taken down"}},
)
async def delete_bundle(bundle_id: str, st: AppState, sv: Live) -> Response:
    """Take a bundle down, as ``DELETE /v1/items/{id}`` an item: a posted bundle is deleted, a warm one of the package
    hidden (``POST /v1/bundles/{id}/restore``). 204; a second DELETE answers 404."""
    bundles = bundles_of(sv, st)
    check_id(bundle_id, "bundle_id")
    removed = await bundles.catalog.delete(bundle_id)
    if sv.shadow is not None:
        removed = await sv.shadow.take_down_bundle(bundle_id) or removed
    if not removed:
        raise NotFound(f"no bundle {bundle_id} to take down (unknown, or already taken down)")
    return Response(status_code=204)


@router.post(
    "/v1/bundles/{bundle_id}/restore",
    status_code=204,
    dependencies=[access(WRITE)],
    responses={404: {"description": "not a hidden warm bundle"}},
)
async def restore_bundle(bundle_id: str, st: AppState, sv: Live) -> Response:
    bundles = bundles_of(sv, st)
    check_id(bundle_id, "bundle_id")
    if not await bundles.catalog.restore(bundle_id):
        raise NotFound(f"bundle {bundle_id} is not hidden")
    return Response(status_code=204)
