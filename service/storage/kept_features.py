"""Content features kept for re-embedding (``service.rollout``), on a ``RedisStore``'s client, under the
encoders' fingerprint ``F`` (key layout in ``service.storage.store``): written in the same transaction as
the item's proxy, read back by the backfill, and updated by the warm-up path.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
import redis.asyncio as aioredis

from coldproxy.errors import StoreUnavailable
from service.storage.cluster import partition_tag
from service.storage.store import scan_members

log = logging.getLogger("coldproxy.store")


@dataclass(frozen=True)
class KeptFeatures:
    """An item's stored content features (float32 again), the interaction count last recorded and the ID
    embedding the recommender sent with it, with the fingerprint of the ID space it belongs to."""

    features: np.ndarray
    interactions: int = 0
    id_embedding: np.ndarray | None = None
    id_fingerprint: str | None = None
    posted_at: str | None = None  # when the item was first stored (the item hash's ``posted_at``), as written


SET_IF_PRESENT = """
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('HSET', KEYS[1], unpack(ARGV))
  return 1
end
return 0
"""


class FeatureStore:
    """Items' content features under one encoder fingerprint (see the module docstring), on a store's client."""

    def __init__(
        self,
        client: aioredis.Redis,
        prefix: str,
        fingerprint: str,
        width: int,
        dtype: str = "float16",
        partitions: int = 0,
    ):
        """``partitions``: on a Redis Cluster, the store's partition count (``service.storage.cluster``): each
        item's features then share its proxy's hash slot, so both are written in one transaction."""
        self.client, self.width, self.dtype, self.partitions = client, width, np.dtype(dtype), partitions
        self.base = f"{prefix}:features:{fingerprint}"
        self._set_if_present = client.register_script(SET_IF_PRESENT)

    def _part(self, item_id: str) -> str:
        if not self.partitions:
            return self.base
        return f"{self.base}:{partition_tag(item_id, self.partitions)}"

    def key(self, item_id: str) -> str:
        return f"{self._part(item_id)}:item:{item_id}"

    def set_keys(self, name: str = "items") -> list[str]:
        if not self.partitions:
            return [f"{self.base}:{name}"]
        return [f"{self.base}:{{cp{p}}}:{name}" for p in range(self.partitions)]

    def _changed(self, item_id: str) -> str:
        return f"{self._part(item_id)}:changed"

    def check(self, features: np.ndarray) -> None:
        if features.shape != (self.width,) or not np.isfinite(features).all():
            raise ValueError(f"refusing to keep content features of shape {features.shape}, not ({self.width},)")

    def queue(self, pipe, item_id: str, features: np.ndarray, now: str) -> None:
        """Add the writes of ``item_id``'s (checked) features to a transaction (a new item starts with no
        interactions); ``now`` is kept as when the item was first stored, as in its hash, so a package it is
        re-embedded for knows it too (``created_after``)."""
        key = self.key(item_id)
        pipe.hdel(key, "interactions", "id_embedding", "id_fingerprint")  # an overwrite forgets them
        pipe.hset(key, mapping={"features": features.astype(self.dtype).tobytes(), "dtype": self.dtype.name})
        pipe.hsetnx(key, "posted_at", now)
        pipe.sadd(f"{self._part(item_id)}:items", item_id)
        pipe.zadd(self._changed(item_id), {item_id: float(now)})

    def forget(self, pipe, item_id: str) -> None:
        """Add the removal of ``item_id``'s features to a transaction (a deleted item is never re-embedded)."""
        pipe.delete(self.key(item_id))
        pipe.srem(f"{self._part(item_id)}:items", item_id)
        pipe.zrem(self._changed(item_id), item_id)

    async def exists_many(self, item_ids: list[str]) -> list[bool]:
        """Which of ``item_ids`` still have kept features."""
        async with self.client.pipeline(transaction=False) as pipe:
            for i in item_ids:
                pipe.exists(self.key(i))
            return [bool(n) for n in await pipe.execute()]

    async def note_warm_up(
        self, item_id: str, interactions: int, id_embedding: np.ndarray | None, id_fingerprint: str
    ) -> bool:
        """Record the item's interaction count (and ID embedding) beside its features, if it has any."""
        args: list = ["interactions", int(interactions)]
        if id_embedding is not None:
            args += ["id_embedding", id_embedding.astype(np.float32).tobytes(), "id_fingerprint", id_fingerprint]
        try:
            noted = bool(await self._set_if_present(keys=[self.key(item_id)], args=args))
            if noted:
                await self.client.zadd(self._changed(item_id), {item_id: time.time()})
            return noted
        except Exception as exc:
            raise StoreUnavailable(str(exc)) from exc

    async def changed_since(self, t: float) -> dict[str, float]:
        """The items whose features or warm-up were written at or after ``t`` (a Unix time, any replica's clock), and
        when."""
        try:
            out = {}
            for key in self.set_keys("changed"):
                out |= {i.decode(): s for i, s in await self.client.zrangebyscore(key, t, "+inf", withscores=True)}
            return out
        except Exception as exc:
            raise StoreUnavailable(str(exc)) from exc

    async def all_ids(self) -> list[str]:
        return await scan_members(self.client, self.set_keys())

    async def get_many(self, item_ids: list[str]) -> dict[str, KeptFeatures]:
        """The kept features of those among ``item_ids`` that have usable ones."""
        try:
            async with self.client.pipeline(transaction=False) as pipe:
                for i in item_ids:
                    pipe.hgetall(self.key(i))
                raw = await pipe.execute()
        except Exception as exc:
            raise StoreUnavailable(str(exc)) from exc
        out = {}
        for i, r in zip(item_ids, raw):
            try:
                f = np.frombuffer(r[b"features"], dtype=np.dtype(r[b"dtype"].decode())).astype(np.float32)
            except (KeyError, TypeError, ValueError, UnicodeDecodeError):
                if r:
                    log.error("content features of %s are unreadable; it cannot be re-embedded", i)
                continue
            if f.shape != (self.width,) or not np.isfinite(f).all():
                log.error(
                    "content features of %s have %d values, not %d; it cannot be re-embedded", i, f.size, self.width
                )
                continue
            id_emb = r.get(b"id_embedding")
            out[i] = KeptFeatures(
                f,
                int(r.get(b"interactions", 0)),
                None if id_emb is None else np.frombuffer(id_emb, np.float32),
                r[b"id_fingerprint"].decode() if b"id_fingerprint" in r else None,
                r[b"posted_at"].decode() if b"posted_at" in r else None,
            )
        return out
