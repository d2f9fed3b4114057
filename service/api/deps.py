"""The route dependencies: the running service's ``State`` (``AppState``), its serving package (``Live``), and
``access``, the per-route rate limit and API-key check every ``/v1`` route declares."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from coldproxy.errors import Forbidden, NotReady, RateLimited, Unauthorized
from service.auth import LOOPBACK, RateLimiter, bearer, check_same_site
from service.serving import Serving
from service.state import State


async def get_state(request: Request) -> State:  # async: FastAPI runs plain-def dependencies in a thread pool
    return request.app.state.coldproxy


AppState = Annotated[State, Depends(get_state)]


async def get_serving(st: AppState) -> Serving:
    if st.serving is None:
        raise NotReady("no model package loaded yet")
    return st.serving


Live = Annotated[Serving, Depends(get_serving)]


READ, WRITE, ADMIN = "read", "write", "admin"


def access(level: str):
    """Dependency: the per-client rate limit (failed keys count against the client's address), then
    the API key: with any key configured, writes need a write or admin key, admin routes an admin
    key, reads one when ``auth_reads``. Without keys (the loopback demo, or anonymous writes allowed
    explicitly), writes must come from this machine's own clients (``check_same_site``), and admin routes
    answer only the loopback demo: ``allow_anonymous_writes`` opens writes, never the admin routes."""

    async def check(request: Request, st: AppState) -> None:  # async: runs on the loop, no thread races
        who, admin = caller(request, st)
        if st.limiter.enabled:
            client = f"key:{who}" if who else f"addr:{request.client.host if request.client else 'unknown'}"
            wait = st.limiter.acquire(client)
            if wait > 0:
                raise RateLimited(
                    f"rate limit of {st.settings.rate_limit_rps:g} requests/s exceeded", RateLimiter.retry_after(wait)
                )
        authorize(request, st, level, who, admin)

    return Depends(check)


def caller(request: Request, st: State) -> tuple[str | None, bool]:
    """The name of the key the request presents (an admin key's or a write key's, or None), and whether it is an
    admin key."""
    presented = request.headers.get("x-api-key") or bearer(request.headers.get("authorization"))
    admin = st.admin_keys.identify(presented) if st.admin_keys.enabled else None
    return admin or (st.keys.identify(presented) if st.keys.enabled else None), admin is not None


def authorize(request: Request, st: State, level: str, who: str | None, admin: bool) -> None:
    """``access``'s key check for ``level`` (see there): ``who`` the caller's key name, ``admin`` whether an admin
    key's."""
    if not (st.keys.enabled or st.admin_keys.enabled):  # no keys at all
        if level == ADMIN and st.settings.allow_anonymous_writes:
            raise Forbidden(
                "admin routes need an admin key (COLDPROXY_ADMIN_API_KEYS_FILE): "
                "COLDPROXY_ALLOW_ANONYMOUS_WRITES opens writes only"
            )
        if level != READ and st.settings.host in LOOPBACK:
            check_same_site(request, st.settings)
        return
    if level == ADMIN and not admin:
        raise Unauthorized("admin routes need an admin X-API-Key (COLDPROXY_ADMIN_API_KEYS_FILE)")
    if who is None and (level == WRITE or st.settings.auth_reads):
        raise Unauthorized("missing or wrong X-API-Key")


def check_private_read(request: Request, st: State) -> None:
    """A read that reveals what a user interacted with (recommendations with ``exclude_seen=false``: their difference
    from ``true`` is the user's history) needs a key, as a write does; the keyless loopback demo allows it from this
    machine's own clients, and ``allow_anonymous_writes`` does not open it."""
    if st.settings.allow_anonymous_writes and not (st.keys.enabled or st.admin_keys.enabled):
        raise Forbidden("exclude_seen=false for a user_id reveals the user's interactions: it needs an API key")
    authorize(request, st, WRITE, *caller(request, st))
