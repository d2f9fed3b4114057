"""Take-downs and time filters (issue 44), over real HTTP to two replicas of the tiny package on one real Redis: a
deleted new item and a hidden warm item leave GET, rank and recommendations on both replicas within the sync delay,
a replica started afterwards never serves them, a hidden warm item can be restored, the kept features of a deleted
item are gone (no rollout brings it back), and ``created_after`` keeps only what was first stored after it."""

from __future__ import annotations

import time
from datetime import datetime, timezone

import httpx
import pytest

from coldproxy.config import ServiceSettings
from tests.conftest import REDIS_URL, LiveServer, _free_port

SYNC_DELAY_S = 2.0


@pytest.fixture()
def replicas(tiny_package_dir, fresh_prefix):
    """Two replicas of the tiny package on one Redis prefix of this test's own, and a way to start a third."""

    def start() -> LiveServer:
        return LiveServer(
            ServiceSettings(
                package_dir=tiny_package_dir,
                redis_url=REDIS_URL,
                redis_prefix=fresh_prefix,
                port=_free_port(),
                bundle_package_dir=None,
            )
        )

    with (
        start() as a,
        start() as b,
        httpx.Client(base_url=a.url, timeout=30) as ca,
        httpx.Client(base_url=b.url, timeout=30) as cb,
    ):
        yield ca, cb, start


def visible(c: httpx.Client, item_id: str) -> dict[str, bool]:
    """Where ``item_id`` shows on one replica: GET, rank (not missing), user 0's recommendations over everything."""
    ranked = c.post("/v1/rank", json={"user_id": "0", "item_ids": [item_id, "warm-0"]}).json()
    recs = c.post("/v1/recommendations", json={"user_id": "0", "k": 1000, "exclude_seen": False}).json()["items"]
    return {
        "get": c.get(f"/v1/items/{item_id}/embedding").status_code == 200,
        "rank": item_id not in ranked["missing"],
        "recommend": item_id in {h["item_id"] for h in recs},
    }


def settles(clients, item_id: str, want: bool, within: float = SYNC_DELAY_S) -> dict:
    """Waits until ``item_id`` shows (``want``) everywhere on every client, or not at all; returns the last look."""
    deadline = time.monotonic() + within
    while True:
        looks = {n: visible(c, item_id) for n, c in enumerate(clients)}
        if all(v == want for look in looks.values() for v in look.values()) or time.monotonic() > deadline:
            return looks
        time.sleep(0.05)


def test_a_deleted_new_item_leaves_every_replica_and_its_kept_features(replicas, redis_client, fresh_prefix):
    a, b, start = replicas
    r = a.post("/v1/items", json={"item_id": "gone-soon", "text": "a red wool scarf"})
    assert r.status_code == 200, r.text
    assert all(v for look in settles([a, b], "gone-soon", True).values() for v in look.values())
    assert redis_client.keys(f"{fresh_prefix}:features:*:item:gone-soon")  # kept for rollouts until deleted

    assert b.delete("/v1/items/gone-soon").status_code == 204  # on the replica that did not post it
    looks = settles([a, b], "gone-soon", False)
    assert not any(v for look in looks.values() for v in look.values()), looks
    assert a.delete("/v1/items/gone-soon").status_code == 404  # a second DELETE
    assert not redis_client.keys(f"{fresh_prefix}:features:*:item:gone-soon")
    assert not redis_client.keys(f"{fresh_prefix}:*:item:gone-soon")
    with start() as c, httpx.Client(base_url=c.url, timeout=30) as cc:  # a replica started afterwards
        assert not any(visible(cc, "gone-soon").values())

    again = a.post("/v1/items", json={"item_id": "gone-soon", "text": "a red wool scarf"})  # posted again: back
    assert again.status_code == 200 and again.json()["embedding"] == r.json()["embedding"]
    assert all(v for look in settles([a, b], "gone-soon", True).values() for v in look.values())


def test_a_hidden_warm_item_leaves_every_replica_until_it_is_restored(replicas):
    a, b, start = replicas
    assert all(visible(b, "warm-3").values())
    assert a.delete("/v1/items/warm-3").status_code == 204
    looks = settles([a, b], "warm-3", False)
    assert not any(v for look in looks.values() for v in look.values()), looks
    assert b.delete("/v1/items/warm-3").status_code == 404
    assert a.post("/v1/items", json={"item_id": "warm-3", "text": "x"}).status_code == 409  # still the package's
    with start() as c, httpx.Client(base_url=c.url, timeout=30) as cc:  # a replica started afterwards
        assert not any(visible(cc, "warm-3").values())
        only_warm = cc.get("/v1/users/0/recommendations", params={"k": 100, "only": "warm", "exclude_seen": "false"})
        assert len(only_warm.json()["items"]) == 29

    assert b.post("/v1/items/warm-3/restore").status_code == 204
    assert all(v for look in settles([a, b], "warm-3", True).values() for v in look.values())
    assert a.post("/v1/items/warm-3/restore").status_code == 404  # not hidden any more
    assert a.post("/v1/items/never-posted/restore").status_code == 404
    assert a.delete("/v1/items/never-posted").status_code == 404


def test_bad_take_downs_and_filters_get_clear_4xx(replicas):
    a, _, _ = replicas
    assert a.delete("/v1/items/bad id!").status_code in (404, 422)
    for body in (
        {"user_id": "0", "created_after": "yesterday"},
        {"user_id": "0", "only": "old"},
        {"user_id": "0", "exclude_ids": [f"x{n}" for n in range(1001)]},
        {"user_id": "0", "exclude_seen": "maybe"},
    ):
        r = a.post("/v1/recommendations", json=body)
        assert r.status_code == 422 and r.json()["detail"], body
    assert a.get("/v1/users/0/recommendations", params={"created_after": "soon"}).status_code == 422


def test_created_after_keeps_only_what_was_first_stored_after_it(replicas):
    a, b, _ = replicas
    assert a.post("/v1/items", json={"item_id": "older", "text": "a linen shirt"}).status_code == 200
    time.sleep(0.05)
    cut = datetime.now(timezone.utc)
    time.sleep(0.05)
    assert a.post("/v1/items", json={"item_id": "newer", "text": "a linen skirt"}).status_code == 200
    # an overwrite does not make an item new again: it keeps when it was first stored
    assert (
        a.post("/v1/items", json={"item_id": "older", "text": "a linen shirt, blue", "overwrite": True}).status_code
        == 200
    )
    for c in (a, b):
        deadline = time.monotonic() + SYNC_DELAY_S
        while True:
            got = c.post("/v1/recommendations", json={"user_id": "0", "k": 50, "created_after": cut.isoformat()}).json()
            if [h["item_id"] for h in got["items"]] == ["newer"] or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert [h["item_id"] for h in got["items"]] == ["newer"]
        naive = c.get(
            "/v1/users/0/recommendations",  # no zone: UTC
            params={"k": 50, "created_after": cut.replace(tzinfo=None).isoformat()},
        ).json()["items"]
        assert [h["item_id"] for h in naive] == ["newer"]
        epoch = c.post("/v1/recommendations", json={"user_id": "0", "k": 50, "created_after": cut.timestamp() - 3600})
        assert {h["item_id"] for h in epoch.json()["items"]} == {"older", "newer"}  # never the package's warm items
