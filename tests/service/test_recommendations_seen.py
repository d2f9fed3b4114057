"""Recommendations a product can show (issue 44), over real HTTP to the tiny package: a user's recommendations leave
out what the user interacted with in the package's training data, and the items posted as seen by them since, unless
asked not to, and the filters (exclude_ids, only new / warm) do what they say."""

from __future__ import annotations

import numpy as np

from coldproxy.package import load_package
from service.storage.index import ItemIndex


def test_recommendations_leave_out_the_users_training_interactions(tiny, tiny_package_dir):
    package = load_package(tiny_package_dir)
    indptr, rows = package.seen
    for user in ("1", "7"):
        u = package.user_ids.index(user)
        seen = {package.item_ids[r] for r in rows[indptr[u] : indptr[u + 1]]}
        assert len(seen) == 5
        everything = {
            h["item_id"]
            for h in tiny.get(f"/v1/users/{user}/recommendations", params={"k": 1000, "exclude_seen": "false"}).json()[
                "items"
            ]
        }
        shown = tiny.get(f"/v1/users/{user}/recommendations", params={"k": 1000}).json()["items"]
        assert seen <= everything and {h["item_id"] for h in shown} == everything - seen
        top = tiny.get(f"/v1/users/{user}/recommendations", params={"k": 10}).json()["items"]
        assert len(top) == 10 and not seen & {h["item_id"] for h in top}  # still k answers
        posted = tiny.post("/v1/recommendations", json={"user_id": user, "k": 10}).json()["items"]
        assert posted == top
        kept = tiny.post("/v1/recommendations", json={"user_id": user, "k": 1000, "exclude_seen": False}).json()
        assert {h["item_id"] for h in kept["items"]} == everything


def test_both_indexes_return_k_rows_without_the_excluded_ones():
    rng = np.random.default_rng(4)
    vecs = rng.standard_normal((3000, 16)).astype(np.float32)
    ids = [f"e{k}" for k in range(3000)]
    flat, hnsw = ItemIndex(16), ItemIndex(16, kind="hnsw")
    for index in (flat, hnsw):
        index.upsert(ids, vecs)
    hnsw.build_ann(1)
    q = rng.standard_normal(16).astype(np.float32)
    best = [i for i, _ in flat.search(q, 200)]
    exclude = frozenset(int(i[1:]) for i in best[:150])  # the 150 best rows
    for index in (flat, hnsw):
        hits = [i for i, _ in index.search(q, 20, exclude)]
        assert len(hits) == 20 and not {int(i[1:]) for i in hits} & exclude
    assert len({i for i, _ in hnsw.search(q, 20, exclude)} & {i for i, _ in flat.search(q, 20, exclude)}) >= 18
    # two thirds of the index left out: the graph search skips them itself (issue 59), and still k come back
    most = frozenset(int(i[1:]) for i, _ in flat.search(q, 2000))
    hits = [i for i, _ in hnsw.search(q, 20, most)]
    assert len(hits) == 20 and not {int(i[1:]) for i in hits} & most


def test_recommendation_filters_do_what_they_say(tiny):
    for n in range(3):
        r = tiny.post("/v1/items", json={"item_id": f"filter-new-{n}", "text": f"a striped scarf {n}"})
        assert r.status_code in (200, 409), r.text
    new = tiny.post("/v1/recommendations", json={"user_id": "2", "k": 50, "only": "new"}).json()["items"]
    assert len(new) >= 3 and all(not h["item_id"].startswith("warm-") for h in new)
    assert {f"filter-new-{n}" for n in range(3)} <= {h["item_id"] for h in new}
    warm = tiny.get("/v1/users/2/recommendations", params={"k": 50, "only": "warm"}).json()["items"]
    assert len(warm) == 25 and all(h["item_id"].startswith("warm-") for h in warm)  # 30 warm, 5 of them seen
    top = [h["item_id"] for h in tiny.post("/v1/recommendations", json={"user_id": "2", "k": 5}).json()["items"]]
    shown = top[:3] + ["filter-new-0", "not-an-item"]
    after = tiny.post("/v1/recommendations", json={"user_id": "2", "k": 5, "exclude_ids": shown}).json()["items"]
    assert len(after) == 5 and not set(shown) & {h["item_id"] for h in after}
    bad = [
        ({"user_id": "2", "only": "old"}, 422),
        ({"user_id": "2", "exclude_ids": ["x"] * 1001}, 422),
        ({"user_id": "2", "exclude_ids": ["x" * 200]}, 422),
    ]
    for body, status in bad:
        r = tiny.post("/v1/recommendations", json=body)
        assert r.status_code == status and r.json()["detail"], (body, r.text)
    assert tiny.get("/v1/users/2/recommendations", params={"only": "old"}).status_code == 422


def test_items_posted_as_seen_by_a_user_leave_their_recommendations(tiny):
    top = [h["item_id"] for h in tiny.get("/v1/users/3/recommendations", params={"k": 5}).json()["items"]]
    r = tiny.post("/v1/users/3/interactions", json={"item_ids": top[:2] + ["not-served-yet"]})
    assert r.status_code == 200 and r.json() == {"user_id": "3", "kept": 3}
    for shown in (
        tiny.get("/v1/users/3/recommendations", params={"k": 5}).json()["items"],
        tiny.post("/v1/recommendations", json={"user_id": "3", "k": 5}).json()["items"],
    ):
        assert [h["item_id"] for h in shown] == [h["item_id"] for h in shown if h["item_id"] not in top[:2]]
        assert len(shown) == 5 and not set(top[:2]) & {h["item_id"] for h in shown}
    everything = tiny.post("/v1/recommendations", json={"user_id": "3", "k": 5, "exclude_seen": False}).json()
    assert [h["item_id"] for h in everything["items"]][:2] == top[:2]
    assert tiny.delete("/v1/users/3/interactions").status_code == 204  # forgotten (a privacy request)
    assert [h["item_id"] for h in tiny.get("/v1/users/3/recommendations", params={"k": 5}).json()["items"]] == top
    assert tiny.delete("/v1/users/3/interactions").status_code == 404
    for body, status in (
        ({"item_ids": []}, 422),
        ({"item_ids": ["bad id"]}, 422),
        ({}, 422),
        ({"item_ids": [f"i{n}" for n in range(1001)]}, 413),
    ):
        r = tiny.post("/v1/users/3/interactions", json=body)
        assert r.status_code == status and r.json()["detail"], (body, r.text)


def test_a_users_history_keeps_the_newest_and_expires(redis_client, fresh_prefix):
    import asyncio

    import redis.asyncio as aioredis

    from service.storage.history import UserHistory
    from tests.conftest import REDIS_URL

    async def run():
        client = aioredis.from_url(REDIS_URL)
        try:
            history = UserHistory(client, fresh_prefix, keep=3, max_users=2, ttl_s=60)
            assert await history.add("u", ["a", "b"]) == 2
            assert await history.add("u", ["c", "d", "a"]) == 3  # "b" is the oldest now: trimmed; "a" moved to now
            assert await history.items("u") == ["a", "d", "c"]
            assert 0 < redis_client.pttl(history.key("u")) <= 60_000
            assert await history.items("nobody") == []
            # two users at most (issue 59): a third forgets the one who posted least recently
            await history.add("v", ["a"])
            await history.add("w", ["a"])
            assert await history.items("u") == [] and await history.items("v") == ["a"]
            assert await client.zcard(history.users) == 2
        finally:
            await client.aclose()

    asyncio.run(run())


def test_history_is_kept_only_for_known_users(tiny):
    """An unknown user's history could never be used, and ~4,000 of them filled the chart's Redis (issue 59)."""
    r = tiny.post("/v1/users/nobody-at-all/interactions", json={"item_ids": ["warm-1"]})
    assert r.status_code == 404 and "knows" in r.json()["detail"]


def test_a_users_interactions_are_not_an_anonymous_read(tiny_package_dir, fresh_prefix):
    """With keys configured, exclude_seen=false for a user ID needs one: its difference from the default answer is
    the user's history (issue 59). A vector's recommendations, and the default, stay anonymous reads."""
    import httpx

    from tests.service.test_rollout import live

    key = "write-key-0102030405"
    with live(tiny_package_dir, fresh_prefix, api_keys=[key]) as server, httpx.Client(base_url=server.url) as c:
        assert c.get("/v1/users/1/recommendations", params={"exclude_seen": "false"}).status_code == 401
        r = c.post("/v1/recommendations", json={"user_id": "1", "exclude_seen": False})
        assert r.status_code == 401
        assert c.get("/v1/users/1/recommendations").status_code == 200
        assert (
            c.get(
                "/v1/users/1/recommendations", params={"exclude_seen": "false"}, headers={"X-API-Key": key}
            ).status_code
            == 200
        )
