"""The proxy store on a Redis Cluster (``COLDPROXY_REDIS_CLUSTER=true``).

A cluster runs a transaction only over keys of one hash slot. So every key family is split into
``COLDPROXY_REDIS_CLUSTER_PARTITIONS`` partitions by a hash tag: item ``i`` lives in partition
``p = crc32(i) % partitions``, and its hash, its entry in the ID set, its announcement on the event stream
and its kept content features all carry the tag ``{cpP}``, so they share a slot and are still written in
one transaction. Keys (``P`` prefix, ``V`` version, ``F`` encoder fingerprint):

* ``P:V:{cpP}:item:<id>``, ``P:V:{cpP}:items`` (set), ``P:V:{cpP}:events`` (stream)
* ``P:features:F:{cpP}:item:<id>``, ``P:features:F:{cpP}:items``

Partitions spread over the cluster's masters by their slots. Multi-key reads (``get_many``, the ID sets)
go through redis-py's cluster pipeline, which splits them by node. Replicas follow every partition's stream
with one pipelined, non-blocking XREAD per poll (a blocking XREAD cannot span slots); their stream
position is a dict of partition stream -> last event ID.
"""

from __future__ import annotations

import asyncio
import uuid
import zlib

from redis.asyncio.cluster import RedisCluster
from redis.exceptions import ResponseError

from coldproxy.errors import StoreUnavailable
from service.storage.store import RedisStore, scan_members, trimmed_past

POLL_S = 0.05  # a follower's pause between polls that found nothing new


def partition_tag(item_id: str, partitions: int) -> str:
    return f"{{cp{zlib.crc32(item_id.encode()) % partitions}}}"


class ClusterStore(RedisStore):
    def __init__(
        self, url: str, prefix: str, version: str, dim: int, stream_maxlen: int = 100_000, partitions: int = 16
    ):
        self.url, self.prefix, self.version, self.dim, self.partitions = url, prefix, version, dim, partitions
        self.client = RedisCluster.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0)
        self.base = f"{prefix}:{version}"
        self.stream = None  # one per partition
        self.stream_maxlen = max(100, stream_maxlen // partitions)
        self.origin = uuid.uuid4().hex
        self.features = None
        self.tags = [f"{{cp{p}}}" for p in range(partitions)]

    def tag(self, item_id: str) -> str:
        return partition_tag(item_id, self.partitions)

    def item_key(self, item_id: str) -> str:
        return f"{self.base}:{self.tag(item_id)}:item:{item_id}"

    def set_key(self, item_id: str) -> str:
        return f"{self.base}:{self.tag(item_id)}:items"

    def stream_key(self, item_id: str) -> str:
        return f"{self.base}:{self.tag(item_id)}:events"

    def version_keys(self) -> list[str]:
        return [f"{self.base}:{t}:{kind}" for t in self.tags for kind in ("items", "events")]

    @property
    def streams(self) -> list[str]:
        return [f"{self.base}:{t}:events" for t in self.tags]

    async def _each(self, command: str, keys: list[str], **kwargs) -> list:
        try:
            async with self.client.pipeline(transaction=False) as pipe:
                for key in keys:
                    getattr(pipe, command)(key, **kwargs)
                return await pipe.execute(raise_on_error=False)
        except Exception as exc:
            raise StoreUnavailable(str(exc)) from exc

    async def _fetch_embeddings(self, item_ids: list[str], chunk: int = 2000) -> list[tuple[bytes | None, ...]]:
        """A pipeline of HMGETs of ``emb``, ``src`` and ``posted_at`` (split by node): a script's keys would all have
        to share one slot."""
        out: list[tuple[bytes | None, ...]] = []
        for start in range(0, len(item_ids), chunk):
            async with self.client.pipeline(transaction=False) as pipe:
                for i in item_ids[start : start + chunk]:
                    pipe.hmget(self.item_key(i), "emb", "src", "posted_at")
                out += [tuple(r) for r in await pipe.execute()]
        return out

    async def all_ids(self) -> list[str]:
        return await scan_members(self.client, [f"{self.base}:{t}:items" for t in self.tags])

    async def stream_position(self) -> dict[str, str]:
        newest = await self._each("xrevrange", self.streams, count=1)
        out = {}
        for stream, reply in zip(self.streams, newest):
            if isinstance(reply, Exception):
                raise StoreUnavailable(str(reply))
            out[stream] = reply[0][0].decode() if reply else "0-0"
        return out

    async def missed_since(self, position: dict[str, str]) -> bool:
        infos = await self._each("xinfo_stream", self.streams)
        for stream, info in zip(self.streams, infos):
            if isinstance(info, ResponseError):  # no stream yet in this partition
                continue
            if isinstance(info, Exception):
                raise StoreUnavailable(str(info))
            if trimmed_past(info, position.get(stream, "0-0")):
                return True
        return False

    def advance(self, position: dict[str, str], events: list) -> dict[str, str]:
        out = dict(position)
        for (stream, event_id), _, _ in events:
            out[stream] = event_id
        return out

    def follower(self, block_ms: int) -> RedisCluster:
        return RedisCluster.from_url(self.url, socket_connect_timeout=2.0, socket_timeout=10.0)

    async def read_events(
        self, follower: RedisCluster, position: dict[str, str], block_ms: int, count: int = 1000
    ) -> list[tuple[tuple[str, str], bytes, bytes]]:
        """Events after ``position`` on every partition's stream ((stream, event ID), origin, raw item ID),
        polling until there is one or ``block_ms`` has passed."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + block_ms / 1000
        while True:
            async with follower.pipeline(transaction=False) as pipe:
                for stream in self.streams:
                    pipe.xread({stream: position.get(stream, "0-0")}, count=count)
                replies = await pipe.execute()
            events = [
                ((stream.decode(), eid.decode()), fields.get(b"origin", b""), fields.get(b"id", b""))
                for reply in replies
                for stream, entries in reply or []
                for eid, fields in entries
            ]
            if events or loop.time() >= deadline:
                return events
            await asyncio.sleep(POLL_S)
