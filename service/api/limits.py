"""What a request body may hold, route by route, and its enforcement while the body streams in.

Each route's limit is worked out from the settings that bound what it can legitimately carry (``route_limits``):
a ranking at most ``max_candidates`` IDs of at most 128 characters and one user vector; recommendations and the
warm-up path one vector; ``PUT /v1/items:id-embeddings`` ``max_id_vectors`` vectors; only ``POST /v1/items`` (an
image) and ``POST /v1/items:batch`` take megabytes. ``BodyLimit`` counts the bytes ``receive`` hands the app and
answers 413 once they pass the route's limit -- a chunked request (no length) or one that lies about its length is cut
off there, before the service has buffered more -- and 408 when the body has not arrived within
``COLDPROXY_BODY_TIMEOUT_S``. The JSON routes also bound how many values a body holds before pydantic builds them
(``check_values`` in ``service.api.http``): parsing is work on the event loop, and its cost grows with the number of
values, not bytes (4.7 MB of 131,000 tiny items took 0.3 s to parse).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from coldproxy.config import ServiceSettings
from coldproxy.errors import TimedOut, TooLarge
from coldproxy.limits import MAX_EXCLUDE

BATCH_PATH = "/v1/items:batch"
SCOPE_KEY = "coldproxy.route_limits"  # where ``BodyLimit`` leaves the request's limits for ``read_json``
ID_BYTES = 128 + 16  # an ID as a JSON list element: 128 characters at most, quotes, comma, indentation
FLOAT_BYTES = 32  # a float as JSON text ("-1.2345678901234567e-05"), its comma and spaces
SMALL = 64 * 1024  # fields and a few short lists
FIELDS = 16  # values a body holds besides its lists


@dataclass(frozen=True)
class RouteLimits:
    bytes: int  # the body's size
    values: int  # JSON values separated by commas (list elements and fields), bounded before parsing


def route_limits(path: str, settings: ServiceSettings, dim: int) -> RouteLimits:
    """The limits of the route at ``path``; ``dim``: the largest vector dimension the service serves."""
    s, vector = settings, dim * FLOAT_BYTES + SMALL
    if path == "/v1/items":
        return RouteLimits(s.max_request_bytes, FIELDS)
    if path == BATCH_PATH:
        return RouteLimits(s.max_batch_bytes, s.max_batch_items * 8 + FIELDS)
    if path in ("/v1/rank", "/v1/bundles/rank"):
        return RouteLimits(s.max_candidates * ID_BYTES + vector, s.max_candidates + dim + FIELDS)
    if path == "/v1/items:id-embeddings":
        return RouteLimits(
            s.max_id_vectors * (dim * FLOAT_BYTES + 2 * ID_BYTES) + SMALL, s.max_id_vectors * (dim + 4) + FIELDS
        )
    if path == "/v1/bundles":
        return RouteLimits(s.max_bundle_members * ID_BYTES + SMALL, s.max_bundle_members + FIELDS)
    if path.endswith("recommendations"):  # a vector, and the IDs to leave out
        return RouteLimits(vector + MAX_EXCLUDE * ID_BYTES, dim + MAX_EXCLUDE + FIELDS)
    if path.startswith("/v1/users/") and path.endswith("/interactions"):  # item IDs a user has seen
        return RouteLimits(s.user_history * ID_BYTES + SMALL, s.user_history + FIELDS)
    if path.endswith("/interactions"):
        return RouteLimits(vector, dim + FIELDS)
    return RouteLimits(SMALL, FIELDS + 64)


class BodyLimit:
    """Plain ASGI middleware: raises ``TooLarge`` (413) in the app's own read once the body passes the route's
    limit, and ``TimedOut`` (408) when it is not complete ``body_timeout_s`` after the app first asked for it, so the
    one error handler answers both. ``dim()``: the largest vector dimension served now. The request's limits are
    worked out once, here, and left in its scope for the route's own read (``read_json``)."""

    def __init__(self, app, settings: ServiceSettings, dim):
        self.app, self.settings, self.dim = app, settings, dim

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limits = scope[SCOPE_KEY] = route_limits(scope["path"], self.settings, self.dim())
        limit = limits.bytes
        seen, complete, deadline = 0, False, None
        loop = asyncio.get_running_loop()

        async def limited_receive():
            nonlocal seen, complete, deadline
            if complete:  # the body is in: what follows is the wait for a disconnect, not bounded here
                return await receive()
            deadline = deadline or loop.time() + self.settings.body_timeout_s
            try:
                message = await asyncio.wait_for(receive(), max(0.0, deadline - loop.time()))
            except TimeoutError:
                raise TimedOut(f"request body not received within {self.settings.body_timeout_s:g} s") from None
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise TooLarge(f"request larger than {limit} bytes")
                complete = not message.get("more_body", False)
            return message

        await self.app(scope, limited_receive, send)
