"""The Redis store on its own, against real Redis."""

import asyncio
import uuid

import numpy as np
import pytest

from service.storage.store import RedisStore, StoredItem
from tests.conftest import REDIS_URL


def test_concurrent_first_writes_of_one_id_store_exactly_one(redis_client):
    """Without overwrite, the existence check and the write are atomic: one writer wins, none overwrites."""
    prefix = f"store-test-{uuid.uuid4().hex[:8]}"

    async def race():
        store = RedisStore(REDIS_URL, prefix, "v1", 4)
        try:
            vectors = [np.full(4, k, np.float32) for k in range(8)]
            won = await asyncio.gather(*(store.put("same-id", StoredItem(v, ["text"]), overwrite=False) for v in vectors))
            stored = (await store.get_many(["same-id"]))["same-id"]
            return won, vectors, stored
        finally:
            await store.close()

    try:
        won, vectors, stored = asyncio.run(race())
        assert sum(won) == 1, won
        np.testing.assert_array_equal(stored, vectors[won.index(True)])
    finally:
        keys = list(redis_client.scan_iter(f"{prefix}:*"))
        if keys:
            redis_client.delete(*keys)


def test_non_finite_or_wrong_dim_vectors_are_never_stored_and_corrupt_entries_read_as_missing(redis_client):
    prefix = f"store-test-{uuid.uuid4().hex[:8]}"

    async def scenario():
        store = RedisStore(REDIS_URL, prefix, "v1", 4)
        try:
            for bad in (np.array([1, np.nan, 0, 0], np.float32), np.array([np.inf, 0, 0, 0], np.float32), np.ones(3, np.float32)):
                with pytest.raises(ValueError):
                    await store.put("bad", StoredItem(bad, ["text"]), overwrite=True)
            redis_client.hset(f"{prefix}:v1:item:corrupt", "emb", np.array([1, np.nan, 0, 0], np.float32).tobytes())
            redis_client.hset(f"{prefix}:v1:item:short", "emb", b"\x00" * 8)
            return await store.get_many(["bad", "corrupt", "short"])
        finally:
            await store.close()

    try:
        assert asyncio.run(scenario()) == {}
        assert not redis_client.exists(f"{prefix}:v1:item:bad")
    finally:
        keys = list(redis_client.scan_iter(f"{prefix}:*"))
        if keys:
            redis_client.delete(*keys)


def test_a_lost_watch_settles_by_what_redis_holds(redis_client):
    """redis-py reports a connection drop while watching as WatchError: the store then reads the key
    instead of answering 409 -- our own vector there means the write landed, nothing there means retry."""
    from coldproxy.errors import StoreUnavailable

    prefix = f"store-test-{uuid.uuid4().hex[:8]}"

    async def scenario():
        store = RedisStore(REDIS_URL, prefix, "v1", 4)
        try:
            same = np.full(4, 3, np.float32)
            won = await asyncio.gather(*(store.put("same-id", StoredItem(same.copy(), ["text"]), overwrite=False) for _ in range(6)))
            key = store._key("same-id")
            mine = await store._settle_conflict(key, same.tobytes())
            theirs = await store._settle_conflict(key, np.zeros(4, np.float32).tobytes())
            with pytest.raises(StoreUnavailable):
                await store._settle_conflict(store._key("never-written"), same.tobytes())
            return won, mine, theirs
        finally:
            await store.close()

    try:
        won, mine, theirs = asyncio.run(scenario())
        assert any(won), won
        assert mine is True and theirs is False
    finally:
        keys = list(redis_client.scan_iter(f"{prefix}:*"))
        if keys:
            redis_client.delete(*keys)


def test_an_own_write_whose_reply_was_lost_is_still_indexed_from_its_announcement(redis_client):
    """The POST saw an error (the reply from Redis was lost) but the write landed and was announced
    with this replica's own origin: the replica must not skip it as already indexed."""
    import asyncio

    import numpy as np

    from service.metrics import Metrics
    from service.storage.index import ItemIndex
    from service.storage.sync import IndexSync

    async def scenario():
        store = RedisStore(REDIS_URL, "own-origin-test", "v1", 4)
        index = ItemIndex(4)
        sync = IndexSync(store, index, Metrics(), {})
        await sync.start()
        try:
            emb = np.arange(4, dtype=np.float32)
            redis_client.hset("own-origin-test:v1:item:lost-reply", mapping={"emb": emb.tobytes(), "modalities": "text"})
            redis_client.sadd("own-origin-test:v1:items", "lost-reply")
            redis_client.publish(store.channel, f"{store.origin} lost-reply")
            for _ in range(50):
                if len(index):
                    break
                await asyncio.sleep(0.05)
            return index.vectors(["lost-reply"])
        finally:
            await sync.stop()
            await store.close()
            for key in redis_client.scan_iter("own-origin-test:*"):
                redis_client.delete(key)

    hit, vectors = asyncio.run(scenario())
    assert hit == [0] and vectors[0].tolist() == [0.0, 1.0, 2.0, 3.0]
