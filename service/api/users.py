"""User routes (v1): POST /v1/users/{id}/interactions keeps the items a user has seen since the package was trained,
which their recommendations then leave out (``exclude_seen``), and DELETE forgets them (``service.writes``, over
``service.storage.history``).
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from coldproxy.ids import check_id
from coldproxy.protocol import UserInteractionsIn, UserInteractionsOut
from service.api.deps import WRITE, AppState, Live, access
from service.api.http import json_body, read_json
from service.writes import forget_seen, keep_seen

router = APIRouter()


@router.post(
    "/v1/users/{user_id}/interactions",
    response_model=UserInteractionsOut,
    openapi_extra=json_body(UserInteractionsIn),
    dependencies=[access(WRITE)],
)
async def post_user_interactions(user_id: str, request: Request, st: AppState, sv: Live) -> UserInteractionsOut:
    """Items a user has seen or interacted with since the package was trained (your event stream's clicks, views,
    purchases), kept for every replica: the user's recommendations leave them out from now on, with their training
    interactions (``exclude_seen``). The newest ``COLDPROXY_USER_HISTORY`` per user are kept, for
    ``COLDPROXY_USER_HISTORY_TTL_S`` after the last post, for at most ``COLDPROXY_USER_HISTORY_MAX_USERS`` users (the
    least recent forgotten first). Only a user the serving package knows (404 otherwise: no recommendation by
    user ID could use it); any item ID is taken (one not served yet is left out once it is)."""
    check_id(user_id, "user_id")
    body = await read_json(request, UserInteractionsIn)
    return UserInteractionsOut(
        user_id=user_id, kept=await keep_seen(sv, user_id, body.item_ids, st.settings.user_history)
    )


@router.delete(
    "/v1/users/{user_id}/interactions",
    status_code=204,
    dependencies=[access(WRITE)],
    responses={404: {"description": "nothing kept for the user"}},
)
async def delete_user_interactions(user_id: str, st: AppState, sv: Live) -> Response:
    """Forget the items kept for a user (a privacy request): 204, or 404 when none were kept."""
    check_id(user_id, "user_id")
    await forget_seen(sv, user_id)
    return Response(status_code=204)
