"""Writes that race (issue 39), over real HTTP and real Redis on the tiny package: a reload of the version already
served opens nothing, a warm-up re-gate never writes back over a newer overwrite, a POST retried with its
idempotency key gets the item it stored, not a 409."""

from __future__ import annotations

import asyncio
import shutil

import httpx
import numpy as np

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


def test_a_reload_of_the_served_version_opens_nothing(tiny_package_dir, fresh_prefix, tmp_path):
    live_dir = tmp_path / "package"
    shutil.copytree(tiny_package_dir, live_dir)
    with LiveServer(_settings(live_dir, fresh_prefix)) as live, httpx.Client(base_url=live.url, timeout=30) as c:
        version = c.get("/v1/model").json()["package_version"]
        # a graph file gone: opening the directory again would fail -- answering "unchanged" must not open it
        next(p for p in live_dir.iterdir() if p.suffix == ".onnx").unlink()
        r = c.post("/v1/admin/reload")
        assert r.status_code == 200 and r.json()["changed"] is False and r.json()["package_version"] == version, r.text


def test_a_retried_post_with_its_idempotency_key_gets_the_stored_item(tiny, tiny_server):
    body = {"item_id": "idem-1", "text": "a lamp made of paper"}
    first = tiny.post("/v1/items", json=body, headers={"Idempotency-Key": "req-0001"})
    assert first.status_code == 200, first.text
    again = tiny.post("/v1/items", json=body, headers={"Idempotency-Key": "req-0001"})
    assert again.status_code == 200 and again.headers.get("idempotent-replay") == "true", again.text
    assert np.allclose(again.json()["embedding"], first.json()["embedding"])
    assert tiny.post("/v1/items", json=body, headers={"Idempotency-Key": "req-0002"}).status_code == 409
    assert tiny.post("/v1/items", json=body).status_code == 409
    bad = tiny.post("/v1/items", json=body | {"item_id": "idem-2"}, headers={"Idempotency-Key": "x" * 300})
    assert bad.status_code == 422


def test_a_warm_up_never_writes_back_over_a_newer_overwrite(tiny_package_dir, fresh_prefix):
    """The warm-up path reads the stored item, re-gates it and writes it back only if it is still what was read."""
    from service.metrics import Metrics
    from service.serving import Serving
    from service.storage.records import StoredItem

    async def scenario():
        sv = await Serving.open(_settings(tiny_package_dir, fresh_prefix), Metrics())
        try:
            store = sv.items.store
            assert await store.put("race-1", StoredItem(np.ones(store.dim, np.float32), ["text"]), overwrite=False)
            read = await store.get_record("race-1")
            newer = StoredItem(np.full(store.dim, 2.0, np.float32), ["text"])
            assert await store.put("race-1", newer, overwrite=True)  # a POST with overwrite=true lands in between
            regated = StoredItem(np.full(store.dim, 3.0, np.float32), ["text"])
            assert await sv.items.put("race-1", regated, True, expect=read) is False
            assert np.array_equal((await store.get_record("race-1")).embedding, newer.embedding)
            assert await sv.items.put("race-1", regated, True, expect=await store.get_record("race-1")) is True
            assert np.array_equal((await store.get_record("race-1")).embedding, regated.embedding)
        finally:
            await sv.close()

    asyncio.run(scenario())
