"""Hostile reads and cross-site writes (issue 39), over real HTTP to a real app on the tiny package and real Redis:
each route parses only what it can legitimately hold, headers and URLs are capped, a trickled body times out,
a list of unknown IDs costs Redis a bounded number of lookups, and the keyless loopback demo
refuses writes from other sites."""

from __future__ import annotations

import json
import socket
import time

import httpx
import pytest
import redis

from coldproxy.config import ServiceSettings
from tests.conftest import REDIS_URL, LiveServer, _free_port


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


@pytest.fixture(scope="module")
def bounded(tiny_package_dir, redis_prefix):
    with LiveServer(
        _settings(tiny_package_dir, f"{redis_prefix}:hostile", body_timeout_s=1.0, max_store_lookups=50)
    ) as live:
        yield live


def _raw(port: int, data: bytes, timeout: float = 10.0) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        out = b""
        while b"\r\n\r\n" not in out:
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
        return out


def test_a_ranking_body_is_refused_by_its_own_limits_before_it_is_parsed(bounded):
    with httpx.Client(base_url=bounded.url, timeout=30) as c:
        # bytes: 10,000 candidates of 128 characters is ~1.5 MB; the 8 MiB an image route takes is not a ranking's
        big = json.dumps({"user_id": "1", "item_ids": ["x" * 100] * 40_000}).encode()
        r = c.post("/v1/rank", content=big, headers={"content-type": "application/json"})
        assert r.status_code == 413 and "larger than" in r.json()["detail"]
        # values: 250,000 one-character IDs fit in the bytes, and are counted before pydantic builds a list of them
        many = json.dumps({"user_id": "1", "item_ids": ["1"] * 250_000}).encode()
        r = c.post("/v1/rank", content=many, headers={"content-type": "application/json"})
        assert r.status_code == 413 and "JSON values" in r.json()["detail"]
        r = c.post("/v1/recommendations", json={"user_id": "1", "k": 5, "padding": [0] * 20_000})
        assert r.status_code == 413
        # a maximal valid ranking still answers
        r = c.post("/v1/rank", json={"user_id": "1", "item_ids": [f"warm-{i}" for i in range(10_000)]})
        assert r.status_code == 200 and len(r.json()["scores"]) + len(r.json()["missing"]) == 10_000


def test_a_batch_of_many_tiny_items_is_refused_before_it_is_parsed(bounded):
    body = json.dumps({"items": [{"item_id": f"i{n}", "text": "x"} for n in range(131_000)]}).encode()
    with httpx.Client(base_url=bounded.url, timeout=60) as c:
        r = c.post("/v1/items:batch", content=body, headers={"content-type": "application/json"})
        assert r.status_code == 413 and "JSON values" in r.json()["detail"]
        # commas inside texts are not values: a batch whose texts hold thousands of them is taken
        texts = [{"item_id": f"commas-{n}", "text": "red, blue, green, " * 500} for n in range(3)]
        r = c.post("/v1/items:batch", json={"items": texts})
        assert r.status_code == 200 and r.json()["stored"] == 3, r.text


def test_headers_and_urls_are_capped(bounded):
    with httpx.Client(base_url=bounded.url, timeout=30) as c:
        assert c.get("/healthz", headers={"x-pad": "a" * (1 << 20)}).status_code == 431
        assert c.get("/healthz", headers={f"x-pad-{i}": "a" * 100 for i in range(200)}).status_code == 431
        assert c.get("/v1/items/" + "a" * 10_000 + "/embedding").status_code == 414
        assert c.get("/healthz", headers={"x-pad": "a" * 4000}).status_code == 200  # ordinary headers pass


def test_a_body_that_trickles_in_times_out(bounded):
    port = int(bounded.url.rsplit(":", 1)[1])
    t = time.monotonic()
    head = _raw(
        port,
        b"POST /v1/rank HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b'Content-Length: 100\r\n\r\n{"user_id"',
        timeout=20,
    )
    assert head.split(b" ")[1] == b"408" and time.monotonic() - t < 10


def test_unknown_candidates_cost_redis_a_bounded_number_of_lookups(bounded):
    r = redis.Redis.from_url(REDIS_URL)
    before = r.info("stats")["keyspace_misses"]
    with httpx.Client(base_url=bounded.url, timeout=30) as c:
        out = c.post("/v1/rank", json={"user_id": "1", "item_ids": [f"unknown-{i}" for i in range(5000)]})
    assert out.status_code == 200 and len(out.json()["missing"]) == 5000
    assert r.info("stats")["keyspace_misses"] - before < 1000  # 50 asked, plus what other servers do meanwhile


def test_the_keyless_loopback_demo_refuses_cross_site_writes(bounded):
    with httpx.Client(base_url=bounded.url, timeout=30) as c:
        form = {"item_id": "csrf-1", "text": "hello"}
        r = c.post("/v1/items", data=form, headers={"Origin": "http://evil.example"})
        assert r.status_code == 403 and "cross-site" in r.json()["detail"]
        r = c.post("/v1/items", data=form, headers={"Sec-Fetch-Site": "cross-site"})
        assert r.status_code == 403
        other_port = bounded.url.rsplit(":", 1)[0] + ":1"  # a page another local server serves (issue 59)
        r = c.post("/v1/items", data=form, headers={"Origin": other_port})
        assert r.status_code == 403 and "cross-site" in r.json()["detail"]
        r = c.post("/v1/items", data=form, headers={"Host": "rebound.evil.example"})
        assert r.status_code == 403 and "Host" in r.json()["detail"]
        assert c.post("/v1/admin/reload", headers={"Origin": "http://evil.example"}).status_code == 403
        assert c.get("/v1/items/csrf-1/embedding").status_code == 404  # nothing was stored
        ok = c.post("/v1/items", data=form, headers={"Origin": bounded.url, "Sec-Fetch-Site": "same-origin"})
        assert ok.status_code == 200, ok.text


def test_anonymous_writes_never_open_the_admin_routes(tiny_package_dir, redis_prefix):
    settings = _settings(tiny_package_dir, f"{redis_prefix}:anon", host="0.0.0.0", allow_anonymous_writes=True)
    with LiveServer(settings) as live, httpx.Client(base_url=live.url, timeout=30) as c:
        assert c.post("/v1/admin/reload").status_code == 403
        assert c.post("/v1/items", json={"item_id": "anon-1", "text": "x"}).status_code == 200


def test_every_list_a_request_carries_has_a_ceiling_no_setting_raises():
    from pydantic import ValidationError

    from coldproxy.bundle_protocol import BundleIn
    from coldproxy.limits import MAX_LIST
    from coldproxy.protocol import IdVectorsIn, InteractionsIn, ItemsBatchIn, RankIn

    for model, field in (
        (RankIn, "item_ids"),
        (BundleIn, "item_ids"),
        (IdVectorsIn, "items"),
        (ItemsBatchIn, "items"),
        (InteractionsIn, "id_embedding"),
    ):
        assert model.model_json_schema()["properties"][field].get("maxItems") or any(
            o.get("maxItems") for o in model.model_json_schema()["properties"][field].get("anyOf", [])
        ), model
    with pytest.raises(ValidationError):
        ServiceSettings(max_candidates=MAX_LIST + 1)
