"""A catalog's reads against real Redis: warm rows, cold rows from this replica's index and from Redis,
unknown and malformed IDs, in one lookup and one ranking."""

import asyncio
import uuid

import numpy as np

from service.metrics import Metrics
from service.storage.catalog import Catalog
from service.storage.records import StoredItem
from service.storage.store import RedisStore
from tests.conftest import REDIS_URL

DIM = 8


def test_rank_and_lookup_mix_warm_local_and_redis_rows_and_report_the_unknown(redis_client):
    prefix = f"catalog-test-{uuid.uuid4().hex[:8]}"
    rng = np.random.default_rng(0)
    warm = rng.standard_normal((5, DIM)).astype(np.float32)
    warm[3] = warm[1]  # a tie: w1 and w3 must come out in request order
    local, remote = rng.standard_normal((2, DIM)).astype(np.float32)
    user = rng.standard_normal(DIM).astype(np.float32)

    async def scenario(local_reads: bool):
        metrics = Metrics()
        cat = Catalog(
            "items",
            ["u"],
            user[None],
            [f"w{k}" for k in range(5)],
            warm,
            RedisStore(REDIS_URL, prefix, "v1", DIM),
            metrics,
            local_reads,
        )
        try:
            assert await cat.put("c-local", StoredItem(local, ["text"]), overwrite=True)
            # another replica's write, not indexed here
            await cat.store.put("c-remote", StoredItem(remote, ["image"]), overwrite=True)
            asked = ["w3", "c-remote", "nope", "w1", "bad id!", "c-local", "w3", "w0"]
            ranked, missing = await cat.rank(user, asked)
            # a long list is ranked on a worker thread, its Redis lookup back on the loop: the same answer
            from anyio import to_thread

            assert await to_thread.run_sync(cat.rank_blocking, user, asked) == (ranked, missing)
            found = await cat.lookup(["c-local", "w2", "c-remote", "nope"])
            sources = {
                smp.labels["source"]: smp.value
                for fam in metrics.registry.collect()
                if fam.name == "coldproxy_item_lookups"
                for smp in fam.samples
                if smp.name.endswith("_total")
            }
            return ranked, missing, found, sources
        finally:
            await cat.close()

    try:
        for local_reads in (True, False):
            ranked, missing, found, sources = asyncio.run(scenario(local_reads))
            vec = {"w0": warm[0], "w1": warm[1], "w3": warm[3], "c-local": local, "c-remote": remote}
            in_request_order = ["w3", "c-remote", "w1", "c-local", "w0"]
            # stable: ties as asked
            assert [i for i, _, _ in ranked] == sorted(in_request_order, key=lambda i: -float(vec[i] @ user))
            for item_id, score, source in ranked:
                assert abs(score - float(vec[item_id] @ user)) < 1e-5
                assert source == ("id" if item_id.startswith("w") else "proxy")
            assert missing == ["nope", "bad id!"]
            assert set(found) == {"c-local", "w2", "c-remote"}
            np.testing.assert_array_equal(found["w2"][0], warm[2])
            np.testing.assert_array_equal(found["c-local"][0], local)
            np.testing.assert_array_equal(found["c-remote"][0], remote)
            assert [found[i][1] for i in ("w2", "c-local", "c-remote")] == ["id", "proxy", "proxy"]
            # where each row came from: the rank asked for 3 warm, 2 cold and 2 unknown; the lookup 1, 2, 1
            # (the rank twice: on the loop and on the worker thread)
            assert sources["id"] == 7 and sources["miss"] == 5
            assert sources["proxy_local"] == (3 if local_reads else 0)
            assert sources["proxy_redis"] == (3 if local_reads else 6)
    finally:
        keys = list(redis_client.scan_iter(f"{prefix}:*"))
        if keys:
            redis_client.delete(*keys)
