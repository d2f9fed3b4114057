"""User routes (v1): POST /v1/users/{id}/interactions keeps the items a user has seen since the package was trained,
which their recommendations then leave out (``exclude_seen``), and DELETE forgets them (``service.storage.history``).
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from coldproxy.errors import Conflict, NotFound, TooLarge
from coldproxy.ids import check_id
from coldproxy.protocol import UserInteractionsIn, UserInteractionsOut
from service.api.deps import WRITE, AppState, Live, access
from service.api.http import json_body, read_json
from service.storage.history import UserHistory

router = APIRouter()


def history_of(st: AppState, sv: Live) -> UserHistory:
    if sv.items.history is None:
        raise Conflict("this deployment keeps no user interactions (COLDPROXY_USER_HISTORY=0, or no Redis)")
    return sv.items.history


@router.post("/v1/users/{user_id}/interactions", response_model=UserInteractionsOut,
             openapi_extra=json_body(UserInteractionsIn), dependencies=[access(WRITE)])
async def post_user_interactions(user_id: str, request: Request, st: AppState, sv: Live) -> UserInteractionsOut:
    """Items a user has seen or interacted with since the package was trained (your event stream's clicks, views,
    purchases), kept for every replica: the user's recommendations leave them out from now on, with their training
    interactions (``exclude_seen``). The newest ``COLDPROXY_USER_HISTORY`` per user are kept, for
    ``COLDPROXY_USER_HISTORY_TTL_S`` after the last post, for at most ``COLDPROXY_USER_HISTORY_MAX_USERS`` users (the
    least recent forgotten first). Only a user the serving package knows (404 otherwise: no recommendation by
    user ID could use it); any item ID is taken (one not served yet is left out once it is)."""
    check_id(user_id, "user_id")
    history = history_of(st, sv)
    if sv.items.user_vector(user_id) is None:
        raise NotFound(f"unknown user {user_id}: items are kept only for users the serving package knows")
    body = await read_json(request, UserInteractionsIn)
    if len(body.item_ids) > st.settings.user_history:
        raise TooLarge(f"at most {st.settings.user_history} items per request (COLDPROXY_USER_HISTORY)")
    for item_id in body.item_ids:
        check_id(item_id, "each of item_ids")
    return UserInteractionsOut(user_id=user_id, kept=await history.add(user_id, body.item_ids))


@router.delete("/v1/users/{user_id}/interactions", status_code=204, dependencies=[access(WRITE)],
               responses={404: {"description": "nothing kept for the user"}})
async def delete_user_interactions(user_id: str, st: AppState, sv: Live) -> Response:
    """Forget the items kept for a user (a privacy request): 204, or 404 when none were kept."""
    check_id(user_id, "user_id")
    if not await history_of(st, sv).forget(user_id):
        raise NotFound(f"no interactions kept for user {user_id}")
    return Response(status_code=204)
