"""How uvicorn runs the app: one ``uvicorn_config`` for ``coldproxy serve`` and the tests, so both get the same
connection-level bounds. uvicorn's httptools parser (the fast one, bench/results/design_measurements.md) caps
neither a request's headers nor its URL, so a client could make a replica buffer megabytes before the app sees the
request: ``BoundedHttpTools`` counts them as they are parsed and answers 431 (headers) or 414 (URL), closing the
connection, once they pass ``COLDPROXY_MAX_HEADER_BYTES`` / ``COLDPROXY_MAX_URL_BYTES``. Connections and requests in
flight are capped by ``COLDPROXY_MAX_CONNECTIONS`` (uvicorn's ``limit_concurrency``: past it, 503).
"""

from __future__ import annotations

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from coldproxy.config import ServiceSettings


class HeadTooLarge(Exception):
    """Raised from a parser callback: httptools stops and uvicorn answers through ``send_400_response``."""


def bounded_protocol(max_header_bytes: int, max_url_bytes: int) -> type[HttpToolsProtocol]:
    class BoundedHttpTools(HttpToolsProtocol):
        _head_bytes = 0
        _refusal: tuple[bytes, str] | None = None

        def on_message_begin(self) -> None:
            self._head_bytes, self._refusal = 0, None
            super().on_message_begin()

        def on_url(self, url: bytes) -> None:
            if len(self.url) + len(url) > max_url_bytes:
                self._refusal = (b"414 URI Too Long", f"request URL longer than {max_url_bytes} bytes")
                raise HeadTooLarge()
            super().on_url(url)

        def on_header(self, name: bytes, value: bytes) -> None:
            self._head_bytes += len(name) + len(value) + 4
            if self._head_bytes > max_header_bytes:
                self._refusal = (b"431 Request Header Fields Too Large",
                                 f"request headers larger than {max_header_bytes} bytes")
                raise HeadTooLarge()
            super().on_header(name, value)

        def send_400_response(self, msg: str) -> None:
            if self._refusal is None:
                return super().send_400_response(msg)
            status, text = self._refusal
            body = ('{"detail":"%s"}' % text).encode()
            self.transport.write(b"HTTP/1.1 " + status + b"\r\ncontent-type: application/json\r\ncontent-length: "
                                 + str(len(body)).encode() + b"\r\nconnection: close\r\n\r\n" + body)
            self.transport.close()

    return BoundedHttpTools


def uvicorn_config(app, settings: ServiceSettings, **overrides) -> uvicorn.Config:
    options = dict(host=settings.host, port=settings.port, log_level="info", access_log=settings.access_log,
                   timeout_graceful_shutdown=settings.shutdown_grace_s, limit_concurrency=settings.max_connections,
                   http=bounded_protocol(settings.max_header_bytes, settings.max_url_bytes))
    return uvicorn.Config(app, **(options | overrides))
