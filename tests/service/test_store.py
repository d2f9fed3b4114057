"""The Redis store on its own, against real Redis."""

import asyncio
import uuid

import numpy as np
import pytest

from service.storage.records import StoredItem
from service.storage.store import RedisStore
from tests.conftest import REDIS_URL


def test_concurrent_first_writes_of_one_id_store_exactly_one(redis_client):
    """Without overwrite, the existence check and the write are atomic: one writer wins, none overwrites."""
    prefix = f"store-test-{uuid.uuid4().hex[:8]}"

    async def race():
        store = RedisStore(REDIS_URL, prefix, "v1", 4)
        try:
            vectors = [np.full(4, k, np.float32) for k in range(8)]
            won = await asyncio.gather(
                *(store.put("same-id", StoredItem(v, ["text"]), overwrite=False) for v in vectors)
            )
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
            for bad in (
                np.array([1, np.nan, 0, 0], np.float32),
                np.array([np.inf, 0, 0, 0], np.float32),
                np.ones(3, np.float32),
            ):
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
            won = await asyncio.gather(
                *(store.put("same-id", StoredItem(same.copy(), ["text"]), overwrite=False) for _ in range(6))
            )
            key = store.item_key("same-id")
            mine = await store._settle_conflict(key, same.tobytes())
            theirs = await store._settle_conflict(key, np.zeros(4, np.float32).tobytes())
            with pytest.raises(StoreUnavailable):
                await store._settle_conflict(store.item_key("never-written"), same.tobytes())
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
            redis_client.hset(
                "own-origin-test:v1:item:lost-reply", mapping={"emb": emb.tobytes(), "modalities": "text"}
            )
            redis_client.sadd("own-origin-test:v1:items", "lost-reply")
            redis_client.xadd(store.stream, {"id": "lost-reply", "origin": store.origin})
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


def kill_sync_connections(redis_client, name: str = "coldproxy-sync-") -> int:
    """CLIENT KILL the event-stream followers whose name starts with ``name`` (every replica's by
    default; ``coldproxy-sync-<origin[:8]>`` for one store's); returns how many."""
    ids = [c["id"] for c in redis_client.client_list() if c.get("name", "").startswith(name)]
    for cid in ids:
        redis_client.client_kill_filter(_id=cid)
    return len(ids)


async def close_sync(redis_client, prefix: str, sync, *stores) -> None:
    """Stop a replica's index sync, close its stores and delete what the test wrote under ``prefix``."""
    await sync.stop()
    for store in stores:
        await store.close()
    for key in redis_client.scan_iter(f"{prefix}:*"):
        redis_client.delete(key)


@pytest.mark.parametrize("maxlen", [100_000, 100])
def test_replica_index_matches_redis_after_its_sync_connection_is_killed_under_writes(redis_client, maxlen):
    """Another replica writes 400 items while this one's stream connection is killed again and again
    (and, with a short stream, stays away long enough for the events it missed to be trimmed). After
    the writes, this replica's index must hold exactly what Redis holds; with the full stream it resumes
    from its position (no reload beyond start-up), with the trimmed one it notices and reloads."""
    import asyncio

    import numpy as np

    from service.metrics import Metrics
    from service.storage.index import ItemIndex
    from service.storage.records import StoredItem
    from service.storage.sync import IndexSync

    prefix = f"sync-kill-{maxlen}"

    async def scenario():
        store = RedisStore(REDIS_URL, prefix, "v1", 4, stream_maxlen=maxlen)
        writer = RedisStore(REDIS_URL, prefix, "v1", 4, stream_maxlen=maxlen)
        sync = IndexSync(store, ItemIndex(4), Metrics(), {}, block_ms=200)
        await sync.start()
        # "away": its reads wait until the writes are done. Killed between two reads, redis-py reconnects the idle
        # connection at once, without an error, and the follower would keep up with the writes it was meant to miss
        back, read = asyncio.Event(), store.read_events
        back.set()

        async def read_when_back(*args, **kwargs):
            await back.wait()
            return await read(*args, **kwargs)

        store.read_events = read_when_back
        try:
            kills = 0
            for n in range(400):
                v = np.full(4, n, np.float32)
                assert await writer.put(f"w{n}", StoredItem(v, ["text"]), overwrite=False)
                if n % 50 == 25:
                    for _ in range(100):  # wait for the follower to be back from the last kill
                        if killed := kill_sync_connections(redis_client, f"coldproxy-sync-{store.origin[:8]}"):
                            break
                        await asyncio.sleep(0.05)
                    kills += killed
                    if maxlen < 400:
                        back.clear()  # no await since the kill: the follower has read nothing since
                        for m in range(200):  # while this replica is away: more than the stream keeps
                            await writer.put(f"away{n}-{m}", StoredItem(v, ["text"]), overwrite=False)
                        back.set()
            want = set(await store.all_ids())
            for _ in range(200):
                if set(sync.index.ids()) >= want:
                    break
                await asyncio.sleep(0.05)
            return kills, want, set(sync.index.ids()), sync.reloads
        finally:
            await close_sync(redis_client, prefix, sync, store, writer)

    kills, want, indexed, reloads = asyncio.run(scenario())
    assert kills == 8 and len(want) >= 400
    assert indexed == want
    if maxlen >= 400:
        assert reloads == 1  # start-up only: every reconnect resumed from its stream position
    else:
        assert reloads > 1  # it noticed the trimmed events and reloaded


def test_a_quiet_event_stream_keeps_its_connection(redis_client):
    """A blocking read that outlasts redis-py's default 5 s socket timeout must not drop and reconnect
    every few seconds while nothing is written (the follower's read timeout outlasts its block)."""
    import asyncio

    from service.metrics import Metrics
    from service.storage.index import ItemIndex
    from service.storage.sync import IndexSync

    def followers():
        return {c["id"] for c in redis_client.client_list() if c.get("name", "").startswith("coldproxy-sync-")}

    async def scenario():
        store = RedisStore(REDIS_URL, f"quiet-{uuid.uuid4().hex[:8]}", "v1", 4)
        sync = IndexSync(store, ItemIndex(4), Metrics(), {}, block_ms=5500)
        before = followers()
        await sync.start()
        try:
            await asyncio.sleep(1.0)
            first = followers() - before
            await asyncio.sleep(6.5)
            return first, followers() - before
        finally:
            await sync.stop()
            await store.close()

    first, later = asyncio.run(scenario())
    assert len(first) == 1 and later == first  # the same connection, never re-made


def test_a_replica_reading_slower_than_the_stream_is_trimmed_reloads_instead_of_skipping(redis_client):
    """No disconnect: the replica's follower just stops reading while 500 writes go to a 100-entry
    stream, then reads on from its old position. The events it would read next are partly trimmed
    away; it must notice and reload, not index only what is left."""
    import asyncio

    import numpy as np

    from service.metrics import Metrics
    from service.storage.index import ItemIndex
    from service.storage.records import StoredItem
    from service.storage.sync import IndexSync

    prefix = f"sync-lag-{uuid.uuid4().hex[:8]}"

    async def scenario():
        store = RedisStore(REDIS_URL, prefix, "v1", 4, stream_maxlen=100)
        writer = RedisStore(REDIS_URL, prefix, "v1", 4, stream_maxlen=100)
        sync = IndexSync(store, ItemIndex(4), Metrics(), {}, block_ms=200)
        await sync.start()
        try:
            assert await writer.put("first", StoredItem(np.zeros(4, np.float32), ["text"]), overwrite=False)
            for _ in range(100):
                if "first" in sync.index:
                    break
                await asyncio.sleep(0.02)
            sync._task.cancel()  # the follower stops reading; its connection and position stay
            await asyncio.gather(sync._task, return_exceptions=True)
            for n in range(500):
                await writer.put(f"w{n}", StoredItem(np.full(4, n, np.float32), ["text"]), overwrite=False)
            sync._task = asyncio.create_task(sync._follow())  # and reads on from where it was
            want = set(await store.all_ids())
            for _ in range(200):
                if set(sync.index.ids()) >= want:
                    break
                await asyncio.sleep(0.05)
            return want, set(sync.index.ids()), sync.reloads
        finally:
            await close_sync(redis_client, prefix, sync, store, writer)

    want, indexed, reloads = asyncio.run(scenario())
    assert len(want) == 501 and indexed == want and reloads == 2


def test_sync_stops_even_when_a_cancellation_is_swallowed_mid_read(redis_client):
    """redis-py can swallow a cancellation that lands while a blocking XREAD times out (seen: redis
    8.1, Python 3.11; a replica's shutdown -- and CI -- then hung for good). A store whose read swallows
    the first cancellation, as that race does, must still let ``stop()`` end the follower promptly."""
    import asyncio
    import time

    from service.metrics import Metrics
    from service.storage.index import ItemIndex
    from service.storage.sync import IndexSync

    class SwallowingStore(RedisStore):
        swallowed = 0

        async def read_events(self, follower, position, block_ms, count=1000):
            try:
                return await super().read_events(follower, position, block_ms, count)
            except asyncio.CancelledError:
                if SwallowingStore.swallowed:
                    raise
                SwallowingStore.swallowed += 1
                return []

    async def scenario():
        store = SwallowingStore(REDIS_URL, f"swallow-{uuid.uuid4().hex[:8]}", "v1", 4)
        sync = IndexSync(store, ItemIndex(4), Metrics(), {}, block_ms=5000)
        await sync.start()
        try:
            await asyncio.sleep(0.3)  # the follower is now inside its blocking read
            task, started = sync._task, time.monotonic()
            await sync.stop()
            return task.done(), time.monotonic() - started
        finally:
            await store.close()

    done, took = asyncio.run(scenario())
    assert SwallowingStore.swallowed == 1
    assert done and took < 2.0  # not the 5 s block, and not forever
