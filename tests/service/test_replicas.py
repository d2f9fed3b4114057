"""Several replicas on one Redis: a restarted replica rebuilds its index from Redis, an item posted on
one is recommendable on another within a second, a replica that loses its event-stream connection
resumes, and local reads follow another replica's overwrite."""

import time

import httpx
import numpy as np
import pytest

from tests.service.test_service import post_item


def test_restarted_server_rebuilds_index_from_redis(client, replica):
    """A second process-like app on the same Redis sees the items the first one stored."""
    assert post_item(client, "before-restart", "A western about a stolen train.").status_code == 200
    with replica() as other:
        with httpx.Client(base_url=other.url, timeout=30) as c:
            r = c.get("/v1/items/before-restart/embedding")
            assert r.status_code == 200 and r.json()["source"] == "proxy"
            gauge = [
                l
                for l in c.get("/metrics").text.splitlines()
                if l.startswith('coldproxy_index_items{catalog="items",kind="cold"}')
            ]
            assert gauge and float(gauge[0].split()[-1]) >= 1


def test_item_posted_on_one_replica_is_recommendable_on_another_within_a_second(client, replica, trained):
    """Two replicas on one Redis: the second indexes the first's new item from the event stream, without a restart."""
    with replica() as other, httpx.Client(base_url=other.url, timeout=30) as c2:
        r = post_item(client, "replica-item", "A documentary about deep-sea creatures.")
        assert r.status_code == 200
        posted = np.array(r.json()["embedding"], dtype=np.float32)
        user = trained.dataset.user_ids[0]
        deadline, seen = time.monotonic() + 1.0, None
        while time.monotonic() < deadline and seen is None:
            items = c2.get(f"/v1/users/{user}/recommendations", params={"k": 1000}).json()["items"]
            seen = next((it for it in items if it["item_id"] == "replica-item"), None)
            time.sleep(0.02)
        assert seen is not None, "replica 2 did not index the item within 1 s"
        assert seen["score"] == pytest.approx(float(posted @ trained.user_emb[0]), rel=1e-4, abs=1e-4)
        ranked = c2.post("/v1/rank", json={"user_id": user, "item_ids": ["replica-item"]}).json()
        assert [s["item_id"] for s in ranked["scores"]] == ["replica-item"]


def test_replica_resumes_after_losing_its_event_stream_connection(client, replica, redis_client, trained):
    from tests.service.test_store import kill_sync_connections

    with replica() as other, httpx.Client(base_url=other.url, timeout=30) as c2:
        assert kill_sync_connections(redis_client) >= 1
        assert post_item(client, "after-disconnect", "A heist film set on a night train.").status_code == 200
        user = trained.dataset.user_ids[0]
        deadline, found = time.monotonic() + 10.0, False
        while time.monotonic() < deadline and not found:
            items = c2.get(f"/v1/users/{user}/recommendations", params={"k": 1000}).json()["items"]
            found = any(it["item_id"] == "after-disconnect" for it in items)
            time.sleep(0.1)
        assert found, "replica 2 did not reconnect to the event stream and resume"


def test_local_reads_follow_an_overwrite_made_on_another_replica(client, replica):
    """Reads come from the replica's in-memory copy; an overwrite on another replica must reach it (event stream),
    never leave it serving the old vector."""
    first = post_item(client, "local-read-item", "A quiet drama about two sisters.")
    assert first.status_code == 200
    assert client.get("/v1/items/local-read-item/embedding").json()["embedding"] == first.json()["embedding"]
    with replica() as other, httpx.Client(base_url=other.url, timeout=30) as c2:
        new = post_item(c2, "local-read-item", "A loud action film with car chases.", overwrite="true")
        assert new.status_code == 200 and new.json()["embedding"] != first.json()["embedding"]
        deadline, got = time.monotonic() + 1.0, None
        while time.monotonic() < deadline and got != new.json()["embedding"]:
            got = client.get("/v1/items/local-read-item/embedding").json()["embedding"]
            time.sleep(0.02)
        assert got == new.json()["embedding"], "replica 1 still serves the overwritten vector after 1 s"
    metrics = client.get("/metrics").text
    assert 'coldproxy_item_lookups_total{catalog="items",source="proxy_local"}' in metrics
