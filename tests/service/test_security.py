"""Safe by default (issue 17, first part), over real HTTP on the tiny package: no anonymous writes
beyond loopback, admin routes behind admin keys, failed keys rate-limited, key files that fail
closed, no secrets or client-chosen label values in answers and metrics."""

from __future__ import annotations

import os
import time

import httpx
import pytest

from coldproxy.config import ServiceSettings
from coldproxy.errors import InsecureSettings, StoreUnavailable, public_reason
from service.api.limits import route_limits
from service.app import create_app
from service.auth import KeyRing
from service.storage.store import redact_url
from tests.conftest import REDIS_URL, LiveServer, _free_port

WRITE, ADMIN = "write-key-123456", "admin-key-123456"


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


def test_a_service_beyond_loopback_without_keys_refuses_to_start(tiny_package_dir, redis_prefix):
    with pytest.raises(InsecureSettings, match="without API keys"):
        create_app(_settings(tiny_package_dir, redis_prefix, host="0.0.0.0"))
    create_app(_settings(tiny_package_dir, redis_prefix, host="0.0.0.0", api_keys=[WRITE]))
    create_app(_settings(tiny_package_dir, redis_prefix, host="0.0.0.0", allow_anonymous_writes=True))
    create_app(_settings(tiny_package_dir, redis_prefix))  # loopback: the demo


def test_admin_routes_need_an_admin_key_and_failed_keys_are_rate_limited(tiny_package_dir, redis_prefix):
    settings = _settings(
        tiny_package_dir,
        f"{redis_prefix}:keys",
        api_keys=[WRITE],
        admin_api_keys=[ADMIN],
        rate_limit_rps=0.5,
        rate_limit_burst=3,
    )
    with LiveServer(settings) as live, httpx.Client(base_url=live.url, timeout=30) as c:
        assert c.post("/v1/admin/reload", headers={"X-API-Key": WRITE}).status_code == 401
        reloaded = c.post("/v1/admin/reload", headers={"X-API-Key": ADMIN})
        assert reloaded.status_code == 200 and reloaded.json()["changed"] is False
        assert (
            c.post("/v1/items", json={"item_id": "by-admin", "text": "x"}, headers={"X-API-Key": ADMIN}).status_code
            == 200
        )
        codes = [
            c.post(
                "/v1/items", json={"item_id": "guess", "text": "x"}, headers={"X-API-Key": f"guess-{n:08d}"}
            ).status_code
            for n in range(4)
        ]
        assert codes == [401, 401, 401, 429]  # guesses spend the address's bucket


def test_client_chosen_methods_do_not_become_metric_labels(tiny, tiny_server):
    assert tiny.request("PURGE", "/v1/model").status_code == 405  # httptools parses WebDAV and cache methods
    metrics = tiny.get("/metrics").text
    assert 'method="PURGE"' not in metrics and 'method="other"' in metrics


def test_key_files_fail_closed_and_keys_have_a_minimum_length(tmp_path):
    f = tmp_path / "keys"
    f.write_text("# nothing yet\n")
    with pytest.raises(ValueError, match="holds no keys"):
        KeyRing([], f)
    f.write_text("ranker:first-key-0001\n")
    ring = KeyRing([], f, recheck_s=0.0)
    f.write_text("# emptied by mistake\n")
    os.utime(f, (time.time() + 5, time.time() + 5))
    assert ring.enabled and ring.identify("first-key-0001") == "ranker"  # still closed
    with pytest.raises(ValueError, match="at least 8"):
        KeyRing(["short"], None)


def test_store_errors_keep_addresses_and_passwords_out_of_answers():
    assert redact_url("redis://:s3cret@redis:6379/0") == "redis://:***@redis:6379/0"
    assert redact_url("redis://user:s3cret@redis:6379/0") == "redis://user:***@redis:6379/0"
    assert redact_url("redis://redis:6379/0") == "redis://redis:6379/0"
    down = StoreUnavailable("Error 111 connecting to 10.0.0.5:6379. Connection refused.")
    assert "10.0.0.5" not in str(down.detail) and "10.0.0.5" in str(down)  # logged, not answered
    # a failed rollout's error, shown by the anonymous GET /v1/model, and a dead worker's, by /healthz
    assert public_reason(down) == "store unavailable; retry shortly"
    assert (
        public_reason(ConnectionError("Error 111 connecting to 10.0.0.5:6379"))
        == "ConnectionError (see the service log)"
    )


def test_body_limits_hold_for_chunked_bodies_without_a_length(tiny_package_dir, redis_prefix):
    settings = _settings(tiny_package_dir, f"{redis_prefix}:limits", max_request_bytes=2_000, max_candidates=20)

    def chunks(n):
        yield b'{"user_id": "1", "item_ids": ['
        for i in range(n):
            yield f'"warm-{i % 30}",'.encode()
        yield b'"warm-0"]}'

    with LiveServer(settings) as live, httpx.Client(base_url=live.url, timeout=30) as c:
        small = c.post("/v1/rank", content=chunks(10), headers={"content-type": "application/json"})
        assert small.status_code == 200, small.text  # chunked and under the limit: fine
        limit = route_limits("/v1/rank", settings, dim=live.app.state.coldproxy.vector_dim()).bytes
        big = c.post("/v1/rank", content=chunks(limit // 8), headers={"content-type": "application/json"})
        assert big.status_code == 413 and big.json()["detail"] == f"request larger than {limit} bytes"
        form = httpx.Request(
            "POST",
            live.url,
            data={"item_id": "chunky", "text": "t"},
            files={"image": ("a.png", b"\x89PNG" + b"0" * 5_000, "image/png")},
        )
        body = form.read()
        streamed = c.post(
            "/v1/items",
            content=(body[i : i + 512] for i in range(0, len(body), 512)),
            headers={"content-type": form.headers["content-type"]},
        )
        # a multipart image part, chunked: cut off while it streams in (not by the image size check after parsing)
        assert streamed.status_code == 413 and streamed.json()["detail"] == "request larger than 2000 bytes"
        assert c.get("/healthz").status_code == 200


def test_corrupt_ids_in_redis_neither_stop_a_replica_nor_its_sync(
    tiny, tiny_server, tiny_package_dir, redis_prefix, redis_client
):
    from coldproxy.package import load_package

    version = load_package(tiny_package_dir).manifest.version
    prefix = f"{redis_prefix}:corrupt"
    base = f"{prefix}:{version}"
    redis_client.sadd(f"{base}:items", b"\xff\xfe-not-utf8", b"bad id!", b"good-one")
    redis_client.hset(f"{base}:item:good-one", mapping={"emb": (b"\x00" * 4 * 8), "modalities": "text"})
    with LiveServer(_settings(tiny_package_dir, prefix)) as live, httpx.Client(base_url=live.url, timeout=30) as c:
        assert c.get("/readyz").status_code == 200 and c.get("/v1/model").json()["cold_items_indexed"] == 1
        redis_client.xadd(f"{base}:events", {"id": b"someone \xff\xfe", "origin": b"x"})  # a corrupt announcement
        other = _settings(tiny_package_dir, prefix)
        with LiveServer(other) as writer, httpx.Client(base_url=writer.url, timeout=30) as w:
            assert w.post("/v1/items", json={"item_id": "after-corrupt", "text": "still synced"}).status_code == 200
        deadline = time.time() + 5
        while c.get("/v1/model").json()["cold_items_indexed"] < 2 and time.time() < deadline:
            time.sleep(0.1)
        assert c.get("/v1/model").json()["cold_items_indexed"] == 2  # the announcement after it was indexed
