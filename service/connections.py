"""Connection-level bounds on uvicorn's httptools protocol, so that one client can neither stall nor silence a replica
(issues 39 and 59). ``bounded_protocol`` returns the protocol class ``service.server.uvicorn_config`` runs:

- **Head deadline.** A request's line and headers must be in within ``COLDPROXY_HEADER_TIMEOUT_S`` of the connection
  opening or the request's first byte; else 408 and the connection is closed. (uvicorn's own keep-alive timeout
  covers the wait between requests; nothing covered a head that never ends.)
- **Head bytes counted as they arrive.** httptools buffers a header until its CRLF, so counting in its callbacks
  let a 32 MiB header in before the 431. Bytes of an unfinished head are counted as the socket delivers them
  and refused (431) past ``max_header_bytes + max_url_bytes``; the callbacks still refuse an over-long URL (414) or
  header block (431) exactly.
- **Connections capped, idle ones evicted.** At most ``COLDPROXY_MAX_CONNECTIONS`` connections in all and
  ``COLDPROXY_MAX_CONNECTIONS_PER_CLIENT`` from one address. A connection past either cap closes the oldest *idle*
  one (no request in flight: waiting for or receiving a head) under that cap; only when every one is busy is the
  newcomer answered 503 and closed. Idle sockets held open therefore cost their holder its own oldest sockets, not
  the other clients their service.
- **Requests in flight capped, probes on their own budget.** At most ``max_connections`` requests in flight
  (uvicorn's ``limit_concurrency`` counted idle connections too, so 512 idle sockets answered every request 503);
  the probes (``/healthz``, ``/readyz``) bypass that cap and have their own, ``COLDPROXY_MAX_PROBES_IN_FLIGHT``.
"""

from __future__ import annotations

import asyncio

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

PROBES = frozenset({b"/healthz", b"/readyz"})


class HeadTooLarge(Exception):
    """Raised from a parser callback: httptools stops and uvicorn answers through ``send_400_response``."""


class Registry:
    """The connections of one server, oldest first: in all and by client address."""

    def __init__(self):
        self.all: dict = {}
        self.by_client: dict[str, dict] = {}
        self.probes: set = set()  # connections answering a probe now

    def add(self, conn, client: str) -> None:
        self.all[conn] = None
        self.by_client.setdefault(client, {})[conn] = None

    def remove(self, conn, client: str) -> None:
        self.all.pop(conn, None)
        self.probes.discard(conn)
        mine = self.by_client.get(client)
        if mine is not None:
            mine.pop(conn, None)
            if not mine:
                del self.by_client[client]

    @staticmethod
    def oldest_idle(conns: dict, but):
        return next((c for c in conns if c is not but and not c.busy), None)


def _response(status: bytes, text: str) -> bytes:
    body = ('{"detail":"%s"}' % text).encode()
    return (
        b"HTTP/1.1 "
        + status
        + b"\r\ncontent-type: application/json\r\ncontent-length: "
        + str(len(body)).encode()
        + b"\r\nconnection: close\r\n\r\n"
        + body
    )


def bounded_protocol(
    *,
    max_header_bytes: int,
    max_url_bytes: int,
    header_timeout_s: float,
    max_connections: int,
    max_per_client: int,
    max_probes: int,
) -> type[HttpToolsProtocol]:
    registry = Registry()
    head_cap = max_header_bytes + max_url_bytes + 1024  # the request line and its CRLFs besides

    class BoundedHttpTools(HttpToolsProtocol):
        _in_flight = 0  # requests whose head is complete and whose response is not
        _in_head = True  # a request's line and headers are arriving (not its body, nor the wait between requests)
        _refusal: tuple[bytes, str] | None = None
        _head_bytes = _head_raw = _messages = 0
        _timer: asyncio.TimerHandle | None = None
        _key = ""

        @property
        def busy(self) -> bool:
            return self._in_flight > 0

        # -- connections --------------------------------------------------------------------------------------
        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            self._key = self.client[0] if self.client else ""
            registry.add(self, self._key)
            for conns, cap in ((registry.by_client[self._key], max_per_client), (registry.all, max_connections)):
                if len(conns) > cap:
                    victim = registry.oldest_idle(conns, self)
                    if victim is None:  # every one is busy: this one waits for none of them
                        self._close_with(b"503 Service Unavailable", "too many connections; retry later")
                        return
                    victim._close_with(None, "")
            self._arm()

        def connection_lost(self, exc) -> None:
            registry.remove(self, self._key)
            self._disarm()
            super().connection_lost(exc)

        def _close_with(self, status: bytes | None, text: str) -> None:
            registry.remove(self, self._key)
            self._disarm()
            if not self.transport.is_closing():
                if status is not None:
                    self.transport.write(_response(status, text))
                self.transport.close()

        # -- the head's deadline ------------------------------------------------------------------------------
        def _arm(self) -> None:
            if self._timer is None:
                self._timer = self.loop.call_later(header_timeout_s, self._head_timed_out)

        def _disarm(self) -> None:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None

        def _head_timed_out(self) -> None:
            self._timer = None
            if self._in_head:
                self._close_with(b"408 Request Timeout", f"request head not received within {header_timeout_s:g} s")

        def on_message_begin(self) -> None:
            self._head_bytes, self._head_raw, self._refusal = 0, 0, None
            self._messages += 1
            self._in_head = True
            self._arm()
            super().on_message_begin()

        # -- the head's size, as it arrives -------------------------------------------------------------------
        def data_received(self, data: bytes) -> None:
            was_head, messages = self._in_head, self._messages
            super().data_received(data)
            if not self._in_head or self.transport.is_closing():
                return  # a body (also one still arriving after an early answer) is BodyLimit's to bound
            if not was_head or messages != self._messages:  # a head began inside this chunk: count from the next one
                self._head_raw = 0
                return
            self._head_raw += len(data)
            if self._head_raw > head_cap:
                self._close_with(b"431 Request Header Fields Too Large", f"request head larger than {head_cap} bytes")

        def on_url(self, url: bytes) -> None:
            if len(self.url) + len(url) > max_url_bytes:
                self._refusal = (b"414 URI Too Long", f"request URL longer than {max_url_bytes} bytes")
                raise HeadTooLarge()
            super().on_url(url)

        def on_header(self, name: bytes, value: bytes) -> None:
            self._head_bytes += len(name) + len(value) + 4
            if self._head_bytes > max_header_bytes:
                self._refusal = (
                    b"431 Request Header Fields Too Large",
                    f"request headers larger than {max_header_bytes} bytes",
                )
                raise HeadTooLarge()
            super().on_header(name, value)

        def send_400_response(self, msg: str) -> None:
            if self._refusal is None:
                return super().send_400_response(msg)
            self._close_with(*self._refusal)

        # -- requests in flight ---------------------------------------------------------------------------------
        def on_headers_complete(self) -> None:
            self._disarm()
            self._in_head = False
            self._in_flight += 1
            probe = httptools.parse_url(self.url).path in PROBES
            full = len(registry.probes) >= max_probes if probe else len(self.tasks) >= max_connections
            self.limit_concurrency = 0 if full else None  # uvicorn answers 503 when its limit is reached
            if probe and not full:
                registry.probes.add(self)
            super().on_headers_complete()

        def on_response_complete(self) -> None:
            self._in_flight -= 1
            registry.probes.discard(self)
            super().on_response_complete()

    return BoundedHttpTools
