"""The Redis store on its own, against real Redis."""

import asyncio
import uuid

import numpy as np

from service.store import RedisStore
from tests.conftest import REDIS_URL


def test_concurrent_first_writes_of_one_id_store_exactly_one(redis_client):
    """Without overwrite, the existence check and the write are atomic: one writer wins, none overwrites."""
    prefix = f"store-test-{uuid.uuid4().hex[:8]}"

    async def race():
        store = RedisStore(REDIS_URL, prefix, "v1", 4)
        try:
            vectors = [np.full(4, k, np.float32) for k in range(8)]
            won = await asyncio.gather(*(store.put("same-id", v, ["text"], overwrite=False) for v in vectors))
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
