"""Proxy-embedding store in Redis, keyed by bundle version and item ID.

Key layout (``P`` = prefix, ``V`` = bundle version):
* ``P:V:item:<item_id>`` — hash {emb: float32 bytes, modalities, created_at}, plus the experts'
  outputs (``proxy``, ``diffusion``) and ``interactions`` when the bundle has a cold-aware gate
* ``P:V:items`` — set of the cold item IDs stored for this bundle version (index rebuild)
* ``P:V:events`` — pub/sub channel: ``"<origin> <item_id>"`` for every item written, so other
  replicas index it (``origin`` identifies the writing store, so a replica skips its own writes)

Posted bundles (``service.bundles``) use the same layout under ``P:bundles:<package version>``, with
their ``members`` in the hash. Keys carry the model's version, so proxies of two versions never mix. A write is acknowledged
only after Redis has it. ``MemoryStore`` is the demo-only fallback when no Redis answers.
"""

from __future__ import annotations

import logging
import time
import uuid

import numpy as np
import redis.asyncio as aioredis
from redis.exceptions import WatchError


log = logging.getLogger("coldproxy.store")


class StoreUnavailable(RuntimeError):
    pass


def check_vector(emb: np.ndarray, dim: int) -> None:
    """Nothing but finite vectors of the bundle's dimension is ever stored."""
    if emb.shape != (dim,) or not np.isfinite(emb).all():
        raise ValueError(f"refusing to store a {emb.shape} vector with non-finite values or a dim other than {dim}")


class RedisStore:
    def __init__(self, url: str, prefix: str, version: str, dim: int):
        self.url = url
        self.client = aioredis.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0)
        self.base, self.dim = f"{prefix}:{version}", dim
        self.channel = f"{self.base}:events"
        self.origin = uuid.uuid4().hex

    def _key(self, item_id: str) -> str:
        return f"{self.base}:item:{item_id}"

    async def ping(self) -> bool:
        try:
            return bool(await self.client.ping())
        except Exception:
            return False

    async def put(self, item_id: str, emb: np.ndarray, modalities: list[str], overwrite: bool,
                  extra: dict[str, np.ndarray | int] | None = None) -> bool:
        """Store; returns False (and writes nothing) when the item exists and ``overwrite`` is off.
        ``extra``: more vectors (the experts' outputs) or integers kept in the item's hash."""
        check_vector(emb, self.dim)
        key = self._key(item_id)
        mapping = {"emb": emb.astype(np.float32).tobytes(), "modalities": ",".join(modalities), "created_at": str(time.time())}
        for name, value in (extra or {}).items():
            if isinstance(value, np.ndarray):
                check_vector(value, self.dim)
                value = value.astype(np.float32).tobytes()
            mapping[name] = value
        try:
            async with self.client.pipeline(transaction=True) as pipe:
                if not overwrite:  # check and write atomically: a concurrent writer aborts this one
                    await pipe.watch(key)
                    if await pipe.exists(key):
                        return False
                    pipe.multi()
                pipe.hset(key, mapping=mapping)
                pipe.sadd(f"{self.base}:items", item_id)
                pipe.publish(self.channel, f"{self.origin} {item_id}")
                await pipe.execute()
            return True
        except WatchError:
            # Either another writer got there first, or the connection dropped while watching (redis-py
            # reports that as WatchError too) -- possibly after our EXEC had landed. Look, don't guess.
            return await self._settle_conflict(key, mapping["emb"])
        except Exception as exc:
            raise StoreUnavailable(str(exc)) from exc

    async def _settle_conflict(self, key: str, emb: bytes) -> bool:
        """After a WatchError: True if the key holds exactly our vector (our write landed), False if it
        holds another one (a real conflict), StoreUnavailable if it is absent or Redis cannot say."""
        try:
            stored = await self.client.hget(key, "emb")
        except Exception as exc:
            raise StoreUnavailable(str(exc)) from exc
        if stored is None:
            raise StoreUnavailable("the write was interrupted before it landed; retry")
        return stored == emb

    async def get_many(self, item_ids: list[str]) -> dict[str, np.ndarray]:
        if not item_ids:
            return {}
        try:
            async with self.client.pipeline(transaction=False) as pipe:
                for i in item_ids:
                    pipe.hget(self._key(i), "emb")
                raw = await pipe.execute()
        except Exception as exc:
            raise StoreUnavailable(str(exc)) from exc
        out = {}
        for i, r in zip(item_ids, raw):
            if r is None:
                continue
            v = np.frombuffer(r, dtype=np.float32)
            if v.shape != (self.dim,) or not np.isfinite(v).all():
                log.error("stored embedding of %s is corrupt (%d floats); treated as missing", i, v.size)
                continue
            out[i] = v
        return out

    async def get_record(self, item_id: str) -> dict | None:
        """The item's whole hash: vectors as float32 arrays, ``modalities`` as a list, ints as ints."""
        try:
            raw = await self.client.hgetall(self._key(item_id))
        except Exception as exc:
            raise StoreUnavailable(str(exc)) from exc
        return _decode_record(raw) if raw else None

    async def all_ids(self) -> list[str]:
        try:
            return sorted(m.decode() for m in await self.client.smembers(f"{self.base}:items"))
        except Exception as exc:
            raise StoreUnavailable(str(exc)) from exc

    async def subscribe(self):
        """A pub/sub connection subscribed to the item-written channel (no read timeout: it idles)."""
        client = aioredis.from_url(self.url, socket_connect_timeout=2.0)
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        await pubsub.subscribe(self.channel)
        return pubsub

    async def close(self) -> None:
        await self.client.aclose()


class MemoryStore(RedisStore):
    """In-process stand-in for the one-command demo only; tests always use Redis."""

    def __init__(self, version: str, dim: int):
        self.base, self.dim, self.data, self.records, self.origin = f"memory:{version}", dim, {}, {}, "memory"

    async def ping(self) -> bool:
        return True

    async def put(self, item_id, emb, modalities, overwrite, extra=None):
        check_vector(emb, self.dim)
        if not overwrite and item_id in self.data:
            return False
        self.data[item_id] = emb.astype(np.float32).copy()
        self.records[item_id] = {"emb": self.data[item_id], "modalities": list(modalities), **(extra or {})}
        return True

    async def get_record(self, item_id):
        return self.records.get(item_id)

    async def get_many(self, item_ids):
        return {i: self.data[i] for i in item_ids if i in self.data}

    async def all_ids(self):
        return sorted(self.data)

    async def subscribe(self):
        return None  # one process: nothing to hear from

    async def close(self):
        pass


async def open_store(s, prefix: str, version: str, dim: int) -> RedisStore:
    """The Redis store of one model version under ``prefix``; with ``s.allow_memory_store`` an
    in-process one when Redis does not answer (demo only), else ``StoreUnavailable``."""
    store = RedisStore(s.redis_url, prefix, version, dim)
    if await store.ping():
        return store
    await store.close()
    if not s.allow_memory_store:
        raise StoreUnavailable(f"Redis at {s.redis_url} does not answer (set COLDPROXY_ALLOW_MEMORY_STORE=1 for a demo without it)")
    log.warning("Redis at %s does not answer: using an in-process store for %s; nothing will persist", s.redis_url, prefix)
    return MemoryStore(version, dim)


def _decode_record(raw: dict) -> dict:
    out: dict = {}
    for k, v in raw.items():
        k = k.decode()
        if k in ("emb", "proxy", "diffusion", "id_embedding"):
            out[k] = np.frombuffer(v, dtype=np.float32)
        elif k == "modalities":
            out[k] = [m for m in v.decode().split(",") if m]
        elif k == "interactions":
            out[k] = int(v)
        else:
            out[k] = v.decode()
    return out
