"""Item ranking routes (v1): POST /v1/rank (score candidates for a user), POST /v1/recommendations and GET
/v1/users/{id}/recommendations (FAISS top-k over warm and new items). The user is an ID the model package knows
or, in the POSTs, a vector of its ID space (``user_embedding``: your recommender's user tower, a new sign-up).
Canary users (COLDPROXY_CANARY_FRACTION) are answered by the candidate package; a vector is always answered by the
serving package, whose space it was checked against; every answer names the version that made it."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from coldproxy.protocol import RankIn, RankOut, RecommendFilters, RecommendIn, RecommendOut, UserQuery, versions
from service import reads
from service.api.deps import READ, AppState, access, check_private_read
from service.api.http import fast_json, json_body, read_json

router = APIRouter()


@router.post("/v1/rank", response_model=RankOut, openapi_extra=json_body(RankIn), dependencies=[access(READ)])
async def rank(request: Request, st: AppState) -> Response:
    body = await read_json(request, RankIn)
    sv = st.serving_for(body.user_id)  # one package for the whole request: never two ID spaces in one ranking
    scores, missing = await reads.rank(
        st, sv.items, body, body.item_ids, lambda i, sc, src: {"item_id": i, "score": sc, "source": src}
    )
    st.metrics.answers.labels("rank", sv.version).inc()
    return fast_json({"user_id": body.user_id, **versions(sv.version), "missing": missing, "scores": scores})


async def recommendations(
    request: Request, st: AppState, query: UserQuery, k: int, filters: RecommendFilters, exclude_ids: list[str] = ()
) -> Response:
    if query.user_id is not None and not filters.exclude_seen:
        check_private_read(request, st)
    sv = st.serving_for(query.user_id)
    hits = await reads.top_k(st, sv.items, query, k, filters, exclude_ids)
    st.metrics.answers.labels("recommend", sv.version).inc()
    return fast_json(
        {
            "user_id": query.user_id,
            **versions(sv.version),
            "items": [{"item_id": i, "score": sc, "source": src} for i, sc, src in hits],
        }
    )


@router.post(
    "/v1/recommendations",
    response_model=RecommendOut,
    openapi_extra=json_body(RecommendIn),
    dependencies=[access(READ)],
)
async def recommend_post(request: Request, st: AppState) -> Response:
    """The k best items for a user ID or a user vector of the package's ID space; for a user ID, none the user
    interacted with in the package's data, seen-only interactions included (``exclude_seen``, on by default); none of
    ``exclude_ids`` (what the client already shows); ``only`` new items (served by a proxy: posted since the package,
    or the package's items without an ID vector -- a cold-start exploration slot), only those with an ID vector, or
    all; only items first stored after ``created_after``. Items taken down (``DELETE /v1/items/{id}``) are never
    recommended."""
    body = await read_json(request, RecommendIn)
    return await recommendations(request, st, body, body.k, body, body.exclude_ids)


@router.get("/v1/users/{user_id}/recommendations", response_model=RecommendOut, dependencies=[access(READ)])
async def recommend(
    user_id: str,
    request: Request,
    st: AppState,
    filters: Annotated[RecommendFilters, Query()],
    k: Annotated[int, Query(ge=1)] = 10,
) -> Response:
    """``POST /v1/recommendations`` for a user ID, its filters as query parameters."""
    query = UserQuery.model_construct(user_id=user_id, user_embedding=None, id_space=None)
    return await recommendations(request, st, query, k, filters)
