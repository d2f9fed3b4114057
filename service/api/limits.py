"""Request-body limits enforced while the body streams in, not only from Content-Length: a chunked
request (no length) or one that lies about its length is cut off at the limit with a 413, before
the service has buffered more than that. ``POST /v1/items:batch`` has its own, larger limit."""

from __future__ import annotations

from coldproxy.config import ServiceSettings
from coldproxy.errors import TooLarge

BATCH_PATH = "/v1/items:batch"


class BodyLimit:
    """Plain ASGI middleware: counts the bytes ``receive`` hands the app and raises ``TooLarge`` in
    the app's own read once they pass the route's limit, so the one error handler answers 413."""

    def __init__(self, app, settings: ServiceSettings):
        self.app, self.settings = app, settings

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = self.settings.max_batch_bytes if scope["path"] == BATCH_PATH else self.settings.max_request_bytes
        seen = 0

        async def limited_receive():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise TooLarge(f"request larger than {limit} bytes")
            return message

        await self.app(scope, limited_receive, send)
