"""A package version's keys in Redis, below the rollout logic (``service/rollout.py``): the re-embedding backfill's
resume marker (``<base>:reembed``: how far the first pass got, so a restarted rollout goes on from there), and the
expiry of a replaced version's keys after a switch (and its undo on a roll-back)."""

from __future__ import annotations


def _resume_key(store) -> str:
    return f"{store.base}:reembed"


async def resume_position(store) -> str | None:
    """The last item ID an interrupted backfill of this version re-embedded (IDs are done in sorted order)."""
    position = await store.client.hget(_resume_key(store), "position")
    return position.decode() if position else None


async def save_position(store, position: str, reembedded: int) -> None:
    await store.client.hset(_resume_key(store), mapping={"position": position, "reembedded": reembedded})


async def mark_complete(store, reembedded: int) -> None:
    await store.client.hset(_resume_key(store), mapping={"state": "complete", "reembedded": reembedded})


async def _each_item_key(store, command: str, batch: int, *args) -> int:
    """Run ``command`` (a redis-py pipeline method) on every key of ``store``'s version; how many items."""
    ids, n = await store.all_ids(), 0
    for start in range(0, len(ids), batch):
        async with store.client.pipeline(transaction=False) as pipe:
            for i in ids[start : start + batch]:
                getattr(pipe, command)(store.item_key(i), *args)
            await pipe.execute()
        n += len(ids[start : start + batch])
    for key in (*store.version_keys(), _resume_key(store)):
        await getattr(store.client, command)(key, *args)
    return n


async def expire_version(store, keep_s: float, batch: int = 1000) -> int:
    """Let every key of a replaced package version expire in ``keep_s`` seconds (replicas still serving it
    have until then to be reloaded); returns how many item keys were given the expiry. 0: keep them."""
    if store.features is None or keep_s <= 0:  # a MemoryStore has nothing to expire
        return 0
    return await _each_item_key(store, "expire", batch, max(1, int(keep_s)))


async def persist_version(store, batch: int = 1000) -> int:
    """Undo ``expire_version`` (rolling back to a package within its keep time): every key stays."""
    if store.features is None or max([await store.client.ttl(k) for k in store.version_keys()]) < 0:  # no expiry
        return 0
    return await _each_item_key(store, "persist", batch)
