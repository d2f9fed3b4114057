"""One anonymous client must not stall or silence a replica (issue 59), over real sockets to a real app on the tiny
package and real Redis: the JSON value counter is linear in the body, idle sockets neither silence the probes nor
the other clients (idle ones are evicted, heads have a deadline), and a header is refused as its bytes arrive."""

from __future__ import annotations

import json
import socket
import time

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coldproxy.config import ServiceSettings
from coldproxy.errors import TooLarge
from service.api.http import check_values, commas_outside_strings
from tests.conftest import REDIS_URL, LiveServer, _free_port

ROUTE_MAX = 1_400_000  # about what /v1/rank admits (10,000 IDs of 128 characters)


def _settings(package_dir, prefix, **over) -> ServiceSettings:
    return ServiceSettings(
        **(
            {
                "package_dir": package_dir,
                "redis_url": REDIS_URL,
                "redis_prefix": prefix,
                "port": _free_port(),
                "bundle_package_dir": None,
            }
            | over
        )
    )


def _unclosed(size: int) -> bytes:
    """The issue's body: 15,000 commas, then a string that never closes, of escaped quotes."""
    head = b'{"user_id":"1","item_ids":[' + b"," * 15_000 + b'"'
    return head + b'\\"' * ((size - len(head)) // 2)


HOSTILE = {
    "unclosed string of escaped quotes": _unclosed,
    "unclosed strings, one per value": lambda n: b'{"item_ids":[' + b'"a,",\\' * (n // 6),
    "a lone trailing backslash": lambda n: b'["' + b"\\\\" * (n // 2 - 2) + b"\\",
    "escaped newlines": lambda n: b'{"a":"' + b"\\\n" * (n // 2),
    "deep nesting": lambda n: b"[" * n,
    "a long number": lambda n: b'{"k":' + b"1" * n,
    "quotes only": lambda n: b'"' * n,
}


@pytest.mark.parametrize("shape", list(HOSTILE))
def test_the_value_counter_is_linear_in_the_body(shape):
    """At the route's maximum every shape is counted in milliseconds (the quadratic counter took 4 s at 31 KB);
    and eight times the body costs about eight times the time, not sixty-four."""

    def took(size: int) -> float:
        body, best = HOSTILE[shape](size), float("inf")
        for _ in range(3):
            t = time.perf_counter()
            try:
                check_values(body, 10_016)
            except TooLarge:
                pass
            best = min(best, time.perf_counter() - t)
        return best

    assert took(ROUTE_MAX) < 0.25
    small, large = took(ROUTE_MAX // 8), took(ROUTE_MAX)
    assert large < 24 * small + 0.005, (small, large)


def _commas_outside_strings(text: str) -> int:
    count, in_string, escaped = 0, False, False
    for ch in text:
        if escaped:
            escaped = False
        elif ch == "\\" and in_string:
            escaped = True
        elif ch == '"':
            in_string = not in_string
        elif ch == "," and not in_string:
            count += 1
    return count


JSONS = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=False) | st.text(alphabet=',"\\ab\n\u00e9'),
    lambda inner: st.lists(inner, max_size=8) | st.dictionaries(st.text(',"\\a'), inner, max_size=5),
    max_leaves=60,
)


@given(JSONS, st.integers(1, 40), st.sampled_from([1, 2, 3, 7, 1 << 20]))
@settings(max_examples=400, deadline=None)
def test_the_value_counter_counts_commas_outside_strings(doc, limit, chunk):
    """Whatever the chunking (a string, an escape or a run of backslashes cut at a chunk's edge)."""
    raw = json.dumps(doc, ensure_ascii=False).encode()
    assert commas_outside_strings(raw, chunk=chunk) == _commas_outside_strings(raw.decode())
    over = _commas_outside_strings(raw.decode()) >= limit
    if over:
        with pytest.raises(TooLarge):
            check_values(raw, limit)
    else:
        check_values(raw, limit)


def test_the_issues_body_is_answered_at_once_over_http(tiny_server):
    with httpx.Client(base_url=tiny_server.url, timeout=30) as c:
        for size in (31_000, 300_000, ROUTE_MAX):
            t = time.perf_counter()
            r = c.post("/v1/rank", content=_unclosed(size), headers={"content-type": "application/json"})
            assert r.status_code in (413, 422) and time.perf_counter() - t < 1.0, (size, r.status_code)


@pytest.fixture(scope="module")
def capped(tiny_package_dir, redis_prefix):
    with LiveServer(
        _settings(
            tiny_package_dir,
            f"{redis_prefix}:conns",
            max_connections=48,
            max_connections_per_client=32,
            header_timeout_s=1.5,
        )
    ) as live:
        live.port = int(live.url.rsplit(":", 1)[1])
        yield live


def _closed(s: socket.socket, timeout: float = 3.0) -> bytes | None:
    """What the server sent before closing ``s`` (b"" for a bare close), or None if it is still open."""
    s.settimeout(timeout)
    out = b""
    try:
        while chunk := s.recv(65536):
            out += chunk
    except TimeoutError:
        return None
    except ConnectionError:
        pass
    return out


def test_idle_sockets_leave_the_probes_and_other_clients_served(capped):
    idle = [socket.create_connection(("127.0.0.1", capped.port)) for _ in range(80)]
    try:
        time.sleep(0.3)
        with httpx.Client(base_url=capped.url, timeout=10) as c:
            assert c.get("/healthz").status_code == 200
            assert c.get("/readyz").status_code == 200
            assert c.get("/v1/model").status_code == 200
        # the oldest idle ones made room: closed without a word
        assert _closed(idle[0]) == b""
    finally:
        for s in idle:
            s.close()


def test_a_body_still_arriving_after_an_early_answer_is_not_counted_as_a_head(capped):
    """A route may answer before it reads the body (415 here); the rest of the body then arrives on a connection the
    client keeps: it is not a head, and the next request on that connection gets its own answer, not a 431."""
    with httpx.Client(base_url=capped.url, timeout=30) as c:
        for _ in range(3):
            r = c.put("/v1/items:id-embeddings", content=b"x" * 400_000, headers={"content-type": "text/plain"})
            assert r.status_code == 415
            assert c.get("/healthz").status_code == 200


def test_a_head_that_never_ends_gets_408(capped):
    with socket.create_connection(("127.0.0.1", capped.port)) as s:
        t = time.monotonic()
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: a")
        out = _closed(s, timeout=10)
        assert out is not None and out.startswith(b"HTTP/1.1 408") and time.monotonic() - t < 5
    with socket.create_connection(("127.0.0.1", capped.port)) as s:  # a socket that never sends a byte
        assert _closed(s, timeout=10) is not None


def test_a_huge_header_is_refused_before_a_mebibyte_is_read(capped):
    sent = 0
    with socket.create_connection(("127.0.0.1", capped.port)) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: ")
        s.settimeout(0.02)
        chunk, answer = b"a" * 65536, b""
        while sent < 32 * 1024 * 1024 and not answer:
            try:
                s.sendall(chunk)
                sent += len(chunk)
                answer = s.recv(4096)
            except TimeoutError:
                continue
            except ConnectionError:
                break
        if not answer:
            s.settimeout(5)
            answer = s.recv(4096)
    assert answer.startswith(b"HTTP/1.1 431"), answer[:100]
    assert sent < 1024 * 1024, sent


def test_busy_connections_are_not_evicted_and_a_full_address_gets_503(tiny_package_dir, redis_prefix):
    """Two connections per client: with one mid-body (busy) and one idle, a third evicts the idle one; with both
    busy, a fourth is answered 503 -- and the busy requests still complete."""
    settings = _settings(tiny_package_dir, f"{redis_prefix}:busy", max_connections_per_client=2, body_timeout_s=20)
    body = json.dumps({"user_id": "1", "item_ids": ["warm-1"]}).encode()
    head = (
        b"POST /v1/rank HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n" % len(body)
    )
    with LiveServer(settings) as live:
        port = int(live.url.rsplit(":", 1)[1])
        first = socket.create_connection(("127.0.0.1", port))
        first.sendall(head + body[:5])
        idle = socket.create_connection(("127.0.0.1", port))
        time.sleep(0.3)
        second = socket.create_connection(("127.0.0.1", port))
        assert _closed(idle) == b""
        second.sendall(head + body[:5])
        time.sleep(0.3)
        fourth = socket.create_connection(("127.0.0.1", port))
        assert (_closed(fourth) or b"").startswith(b"HTTP/1.1 503")
        for s in (first, second):
            s.sendall(body[5:])
            s.settimeout(10)
            assert s.recv(4096).startswith(b"HTTP/1.1 200")
        for s in (first, second, idle, fourth):
            s.close()
