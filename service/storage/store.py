"""Proxy-embedding store in Redis, keyed by model package version and item ID.

Key layout (``P`` = prefix, ``V`` = model package version):
* ``P:V:item:<item_id>`` — hash {emb: float32 bytes, modalities, created_at (last write), posted_at (first)}, plus the
  experts' outputs (``proxy``, ``diffusion``) and ``interactions`` when the package has a cold-aware gate, and
  ``src: id`` when ``emb`` is the recommender's own vector for the item (``PUT /v1/items:id-embeddings``);
  a warm item of the package has a hash only when the recommender's vector for it was updated so
* ``P:V:items`` — set of the cold item IDs stored for this package version (index rebuild)
* ``P:V:events`` — a Redis Stream with an entry {id, origin} for every item written, added in the
  write's own transaction, so other replicas index it from where they last read (a resume position
  survives disconnects and failovers; ``origin`` identifies the writing store). Trimmed to about
  ``COLDPROXY_SYNC_STREAM_MAXLEN`` entries; a replica that fell further behind reloads the set. A deletion
  (``DELETE /v1/items/{id}``) and a hidden or restored warm item are announced alike: an event says only which item
  changed, and a replica reads what the store holds for it now.
* ``P:hidden`` — set of the package's warm IDs taken down (hidden), across versions: a rollout keeps them hidden

Content features (``service.engine.features``), kept so that a new model package with the same encoders can
re-embed every stored item (``service.rollout``), live outside the version, under the encoders' fingerprint ``F``:
* ``P:features:F:item:<item_id>`` — hash {features: packed row (float16 or float32 bytes), dtype, interactions,
  id_embedding + id_fingerprint when the recommender sent one, posted_at as in the item's hash}; written in the same
  transaction as the proxy
* ``P:features:F:items`` — set of the item IDs with features
* ``P:features:F:changed`` — sorted set: item ID -> when its features or warm-up were last written (a rollout's
  catch-up re-embeds what changed since its backfill began)

Posted bundles (``service.bundle_serving``) use the same layout under ``P:bundles:<package version>``, with
their ``members`` in the hash. Keys carry the model's version, so proxies of two versions never mix. A write is
acknowledged only after Redis has it. ``service.storage.memory.MemoryStore`` is the demo-only fallback when no Redis
answers; ``service.storage.open`` opens the store a deployment uses.
"""

from __future__ import annotations

import logging
import time
import uuid
from urllib.parse import urlsplit, urlunsplit

import numpy as np
import redis.asyncio as aioredis
from redis.exceptions import ResponseError, WatchError

from coldproxy.errors import StoreUnavailable
from coldproxy.ids import ID_RE
from service.storage.records import FROM_RECOMMENDER, REPLACED_FIELDS, Entry, StoredItem, check_vector, same_write

log = logging.getLogger("coldproxy.store")


def stored_id(raw: bytes) -> str | None:
    """An ID read back from Redis, or None (logged) when it is not one this service could have written:
    a corrupt or foreign entry must not stop a replica from starting."""
    try:
        value = raw.decode()
    except UnicodeDecodeError:
        value = None
    if value is None or not ID_RE.fullmatch(value):
        log.error("skipping an entry in the store that is not a valid ID: %r", raw[:80])
        return None
    return value


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***``, for logs and messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def stream_id(entry_id: str | bytes) -> tuple[int, int]:
    """A stream entry ID as a comparable (milliseconds, sequence)."""
    ms, _, seq = (entry_id.decode() if isinstance(entry_id, bytes) else entry_id).partition("-")
    return int(ms), int(seq or 0)


def trimmed_past(info: dict, position: str) -> bool:
    """From a stream's XINFO: whether trimming may have removed entries after ``position``."""
    first = info.get("first-entry")
    if not first:
        return False
    if position == "0-0":  # the stream was empty at our last load: missed if anything was trimmed since
        return int(info.get("entries-added", info.get("length", 0))) > int(info.get("length", 0))
    return stream_id(first[0]) > stream_id(position)  # our position itself is gone: so may be what followed it


async def scan_members(client, keys: list[str], count: int = 10_000) -> list[str]:
    """Every valid ID in the sets ``keys``, sorted, read with SSCAN in pages: one SMEMBERS reply for millions
    of members outlasts the client's socket timeout (a replica of 5M items could not start)."""
    out: set[bytes] = set()
    try:
        for key in keys:
            async for member in client.sscan_iter(key, count=count):
                out.add(member)
    except Exception as exc:
        raise StoreUnavailable(str(exc)) from exc
    return sorted(filter(None, map(stored_id, out)))


HGET_EMB = """
local out = {}
for i, key in ipairs(KEYS) do
  local v = redis.call('HMGET', key, 'emb', 'src', 'posted_at')
  out[3 * i - 2] = v[1] or false
  out[3 * i - 1] = v[2] or false
  out[3 * i] = v[3] or false
end
return out
"""


class RedisStore:
    durable = True  # what it stores outlives the process (``MemoryStore``: not)

    def __init__(self, url: str, prefix: str, version: str, dim: int, stream_maxlen: int = 100_000):
        self.url, self.prefix, self.version = url, prefix, version
        self.client = aioredis.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0)
        self.base, self.dim = f"{prefix}:{version}", dim
        self.stream, self.stream_maxlen = f"{self.base}:events", stream_maxlen
        self.origin = uuid.uuid4().hex
        self.features = None  # a ``service.storage.kept_features.FeatureStore`` on this client: ``put(..., features=)``
        self._hget_emb = self.client.register_script(HGET_EMB)

    async def exists_many(self, item_ids: list[str]) -> list[bool]:
        try:
            async with self.client.pipeline(transaction=False) as pipe:
                for i in item_ids:
                    pipe.exists(self.item_key(i))
                return [bool(n) for n in await pipe.execute()]
        except Exception as exc:
            raise StoreUnavailable(str(exc)) from exc

    async def written_at(self, item_ids: list[str]) -> list[tuple[float, bool] | None]:
        """When each of ``item_ids`` was last written here (its hash's ``created_at``) and whether its vector is the
        recommender's (``src``); None for one not held."""
        try:
            async with self.client.pipeline(transaction=False) as pipe:
                for i in item_ids:
                    pipe.hmget(self.item_key(i), "created_at", "src")
                return [None if t is None else (float(t), src == FROM_RECOMMENDER) for t, src in await pipe.execute()]
        except Exception as exc:
            raise StoreUnavailable(str(exc)) from exc

    def item_key(self, item_id: str) -> str:
        return f"{self.base}:item:{item_id}"

    def set_key(self, item_id: str) -> str:
        """The set of stored IDs that ``item_id`` belongs in (one set here; one per partition in a cluster)."""
        return f"{self.base}:items"

    def stream_key(self, item_id: str) -> str:
        """The event stream ``item_id``'s writes are announced on."""
        return self.stream

    def version_keys(self) -> list[str]:
        """This version's keys other than the items': ID sets and event streams."""
        return [f"{self.base}:items", self.stream]

    def advance(self, position, events: list) -> str:
        """The stream position after ``events`` (read from ``position``)."""
        return events[-1][0] if events else position

    async def ping(self) -> bool:
        try:
            return bool(await self.client.ping())
        except Exception:
            return False

    async def put(
        self,
        item_id: str,
        record: StoredItem,
        overwrite: bool,
        features: np.ndarray | None = None,
        expect: StoredItem | None = None,
    ) -> bool:
        """Store; returns False (and writes nothing) when the item exists and ``overwrite`` is off, or, with
        ``expect`` (the record a read-modify-write read), when the hash is no longer that one (another write landed
        since: its ``created_at`` or vector differ). With ``features`` and a feature store set, the item's content
        features go in the same transaction."""
        for vector in record.vectors().values():
            check_vector(vector, self.dim)
        keep = features is not None and self.features is not None
        if keep:
            self.features.check(features)
        key, now = self.item_key(item_id), str(time.time())
        mapping = record.to_hash() | {"created_at": now}
        try:
            async with self.client.pipeline(transaction=True) as pipe:
                if not overwrite or expect is not None:  # check and write atomically: a concurrent writer aborts this
                    await pipe.watch(key)
                    if expect is None and await pipe.hexists(key, "emb"):  # (a cluster pipeline's EXISTS: no count)
                        return False
                    if expect is not None and not same_write(await pipe.hmget(key, "created_at", "emb"), expect):
                        return False
                    pipe.multi()
                stale = sorted(REPLACED_FIELDS - mapping.keys())
                if stale:  # an overwrite replaces the record, not only the fields it has
                    pipe.hdel(key, *stale)
                pipe.hset(key, mapping=mapping)
                pipe.hsetnx(key, "posted_at", now)  # an overwrite keeps when the item was first stored
                pipe.sadd(self.set_key(item_id), item_id)
                if keep:
                    self.features.queue(pipe, item_id, features, now)
                self._announce(pipe, item_id)
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

    async def _fetch_embeddings(self, item_ids: list[str], chunk: int = 2000) -> list[tuple[bytes | None, ...]]:
        """The ``emb``, ``src`` and ``posted_at`` fields of each item's hash (None where there is none), one script
        call per ``chunk`` items: 4x the items/s of a pipeline of HGETs here (343k against 84k), which is most of a
        replica's start-up; a call holds Redis for a few milliseconds."""
        out: list[bytes | None] = []
        for start in range(0, len(item_ids), chunk):
            out += await self._hget_emb(keys=[self.item_key(i) for i in item_ids[start : start + chunk]])
        return list(zip(out[0::3], out[1::3], out[2::3]))

    async def get_many(self, item_ids: list[str]) -> dict[str, np.ndarray]:
        return {i: e.vector for i, e in (await self.get_many_sourced(item_ids)).items()}

    async def get_many_sourced(self, item_ids: list[str]) -> dict[str, Entry]:
        """item -> its ``Entry`` for the stored ones among ``item_ids``."""
        if not item_ids:
            return {}
        try:
            raw = await self._fetch_embeddings(item_ids)
        except Exception as exc:
            raise StoreUnavailable(str(exc)) from exc
        out = {}
        for i, (r, src, posted) in zip(item_ids, raw):
            if r is None:
                continue
            v = np.frombuffer(r, dtype=np.float32)
            if v.shape != (self.dim,) or not np.isfinite(v).all():
                log.error("stored embedding of %s is corrupt (%d floats); treated as missing", i, v.size)
                continue
            out[i] = Entry(v, src == FROM_RECOMMENDER, float(posted or 0.0))
        return out

    async def delete(self, item_id: str) -> bool:
        """Remove the item's hash, its kept content features (so no rollout re-embeds it) and its membership, and
        announce it, in one transaction; False when there was nothing to remove. Raises ``StoreUnavailable``."""
        key = self.item_key(item_id)
        try:
            for _ in range(3):
                try:
                    async with self.client.pipeline(transaction=True) as pipe:
                        await pipe.watch(key)
                        if not await pipe.hexists(key, "emb"):  # (as in put: a cluster pipeline's EXISTS)
                            return False
                        pipe.multi()
                        pipe.delete(key)
                        pipe.srem(self.set_key(item_id), item_id)
                        if self.features is not None:
                            self.features.forget(pipe, item_id)
                        self._announce(pipe, item_id)
                        await pipe.execute()
                    return True
                except WatchError:
                    continue  # written meanwhile: look again
            raise StoreUnavailable(f"{item_id} kept changing while it was deleted; retry")
        except StoreUnavailable:
            raise
        except Exception as exc:
            raise StoreUnavailable(str(exc)) from exc

    def _announce(self, pipe, item_id: str) -> None:
        pipe.xadd(
            self.stream_key(item_id),
            {"id": item_id, "origin": self.origin},
            maxlen=self.stream_maxlen,
            approximate=True,
        )

    @property
    def hidden_key(self) -> str:
        return f"{self.prefix}:hidden"

    async def set_hidden(self, item_id: str, hidden: bool) -> bool:
        """Hide a warm entry (``hidden``) or show it again, and announce it (always: a retry after a lost answer
        must reach the replicas too); whether the set changed. Raises ``StoreUnavailable``."""
        try:
            changed = await (self.client.sadd if hidden else self.client.srem)(self.hidden_key, item_id)
            async with self.client.pipeline(transaction=False) as pipe:
                self._announce(pipe, item_id)
                await pipe.execute()
        except Exception as exc:
            raise StoreUnavailable(str(exc)) from exc
        return bool(changed)

    async def hidden_among(self, item_ids: list[str]) -> list[bool]:
        """Which of ``item_ids`` are hidden. Raises ``StoreUnavailable``."""
        if not item_ids:
            return []
        try:
            return [bool(x) for x in await self.client.smismember(self.hidden_key, item_ids)]
        except Exception as exc:
            raise StoreUnavailable(str(exc)) from exc

    async def hidden_ids(self) -> list[str]:
        return await scan_members(self.client, [self.hidden_key])

    async def get_record(self, item_id: str) -> StoredItem | None:
        """The item's whole hash as a ``StoredItem``; None when there is none."""
        try:
            raw = await self.client.hgetall(self.item_key(item_id))
        except Exception as exc:
            raise StoreUnavailable(str(exc)) from exc
        return StoredItem.from_hash(raw) if raw else None

    async def all_ids(self) -> list[str]:
        return await scan_members(self.client, [f"{self.base}:items"])

    async def stream_position(self) -> str:
        """The newest event's ID ("0-0" when there is none): where a replica that loads the whole set
        now resumes following (read before the set, so nothing written in between is missed)."""
        try:
            newest = await self.client.xrevrange(self.stream, count=1)
        except Exception as exc:
            raise StoreUnavailable(str(exc)) from exc
        return newest[0][0].decode() if newest else "0-0"

    async def missed_since(self, position: str) -> bool:
        """Whether trimming may have removed events after ``position`` (a replica that lagged more than
        the stream's length behind): then it must reload the whole set. (Trimming does not move Redis's
        max-deleted-entry-id, so the oldest entry left is what tells.)"""
        try:
            info = await self.client.xinfo_stream(self.stream)
        except ResponseError:  # no stream yet: nothing written, nothing missed
            return False
        except Exception as exc:
            raise StoreUnavailable(str(exc)) from exc
        return trimmed_past(info, position)

    def follower(self, block_ms: int) -> aioredis.Redis:
        """A connection for blocking reads of the event stream (its read timeout outlasts a block of
        ``block_ms``; redis-py's default, 5 s here, would not), named so that operators (and tests) can
        find it in CLIENT LIST."""
        return aioredis.from_url(
            self.url,
            socket_connect_timeout=2.0,
            socket_timeout=block_ms / 1000 + 10.0,
            client_name=f"coldproxy-sync-{self.origin[:8]}",
        )

    async def read_events(
        self, follower: aioredis.Redis, position: str, block_ms: int, count: int = 1000
    ) -> list[tuple[str, bytes, bytes]]:
        """Events after ``position``, waiting up to ``block_ms`` for one: (event ID, origin, raw item ID)."""
        reply = await follower.xread({self.stream: position}, count=count, block=block_ms)
        return [
            (eid.decode(), fields.get(b"origin", b""), fields.get(b"id", b""))
            for _, entries in reply or []
            for eid, fields in entries
        ]

    async def close(self) -> None:
        await self.client.aclose()
