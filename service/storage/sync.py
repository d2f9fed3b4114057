"""Keeps this replica's FAISS index in step with the shared store.

Every write adds an entry to the store's event stream (a Redis Stream) in the write's own
transaction. On start the replica notes the stream's newest entry, then loads every stored item, and
follows the stream from the noted position; each event's item is read from the store and upserted
into the index. The position is kept across disconnects and failovers: after one it resumes where it
was, so nothing written meanwhile is missed and nothing is reloaded -- unless the stream was trimmed
past the position (a replica more than ``COLDPROXY_SYNC_STREAM_MAXLEN`` writes behind, after a
disconnect or by reading slower than the writes; checked with every batch it reads), which
triggers a full reload. Its own writes are skipped only when the index already holds the item (a
POST whose Redis reply was lost after the write landed did not index it).

An event names an item, not a change: the replica reads what the store holds for it now. A cold item the store no
longer has was deleted, and leaves the index; a warm item's take-down is read from the hidden set. A reload drops
the cold items the store no longer lists and applies the whole hidden set, so deletions missed while behind are
caught up too.
"""

from __future__ import annotations

import asyncio
import logging

import numpy as np

from service.metrics import Metrics
from service.storage.index import ItemIndex
from service.storage.store import RedisStore, stored_id

log = logging.getLogger("coldproxy.sync")


class IndexSync:
    def __init__(
        self,
        store: RedisStore,
        index: ItemIndex,
        metrics: Metrics,
        warm: dict[str, int],
        catalog: str = "items",
        owner=None,
        block_ms: int = 5000,
    ):
        """``owner``: the ``Catalog`` whose warm entries take the recommender's new vectors (``update_warm``) and
        which tracks the entries the recommender gave (``given``)."""
        self.store, self.index, self.metrics, self.warm, self.catalog = store, index, metrics, warm, catalog
        self.owner = owner
        self.block_ms = block_ms
        self.position: str | None = None  # the last event read; None: reload everything first
        self.reloads = 0
        self._stopping = False
        self._task: asyncio.Task | None = None
        self._reader = None

    def add(
        self, item_ids: list[str], emb: np.ndarray, given: list[bool] | None = None, posted: np.ndarray | None = None
    ) -> None:
        """Upsert items into this replica's index (its own writes, and what the store announces): warm ones take
        the recommender's new vector; ``given`` says which vectors the recommender gave, ``posted`` when each item was
        first stored (None: now, for one new here)."""
        warm = [k for k, i in enumerate(item_ids) if i in self.warm]
        if warm and self.owner is not None:
            self.owner.update_warm([item_ids[k] for k in warm], emb[warm])
        cold = [k for k, i in enumerate(item_ids) if i not in self.warm] if warm else range(len(item_ids))
        if len(cold):
            self.index.upsert(
                [item_ids[k] for k in cold], emb[list(cold)], None if posted is None else posted[list(cold)]
            )
        if given is not None and self.owner is not None:
            for k in cold:
                (self.owner.given.add if given[k] else self.owner.given.discard)(item_ids[k])
        self._count_cold()

    def _count_cold(self) -> None:
        hidden = len(self.owner.hidden) if self.owner is not None else 0  # hidden warm rows are not counted either
        self.metrics.items_indexed.labels(self.catalog, "cold").set(len(self.index) - len(self.warm) + hidden)

    def drop(self, item_ids: list[str]) -> None:
        """Cold items the store no longer holds (deleted): out of this replica's index."""
        cold = [i for i in item_ids if i not in self.warm]
        self.index.remove(cold)
        if self.owner is not None:
            self.owner.given.difference_update(cold)
        self._count_cold()

    async def _index_ids(self, item_ids: list[str], chunk: int = 10_000) -> int:
        """Read and index ``item_ids`` in chunks (a replica loading millions of items never holds one
        pipeline reply for all of them); drop the cold ones the store no longer has; apply the warm ones' take-downs.
        A warm item is in the store only when the recommender gave it a new vector."""
        n = 0
        for start in range(0, len(item_ids), chunk):
            ids = item_ids[start : start + chunk]
            found = await self.store.get_many_sourced(ids)
            if found:
                entries = list(found.values())
                self.add(
                    list(found),
                    np.stack([e.vector for e in entries]),
                    [e.given for e in entries],
                    np.array([e.posted for e in entries]),
                )
            self.drop([i for i in ids if i not in found])
            warm = [i for i in ids if i in self.warm]
            if warm and self.owner is not None:
                self.owner.show(warm, await self.store.hidden_among(warm))
            n += len(found)
        return n

    async def _reload(self) -> int:
        """Every stored item, and the stream position to follow from (read first: nothing falls between); cold items
        the store no longer lists are dropped and the hidden set applied (deletions missed while behind)."""
        position = await self.store.stream_position() if self._reader is not None else None
        stored = await self.store.all_ids()
        n = await self._index_ids(stored)
        listed = set(stored)
        self.drop([i for i in self.index.ids() if i not in listed and i not in self.warm])
        if self.owner is not None:
            hidden = set(await self.store.hidden_ids()) & self.warm.keys()
            changed = list(hidden | self.owner.hidden)
            self.owner.show(changed, [i in hidden for i in changed])
        self.position, self.reloads = position, self.reloads + 1
        self.metrics.sync_reloads.labels(self.catalog).inc()
        return n

    async def start(self) -> int:
        """Initial load (raises if the store fails); then follows the event stream in the background."""
        self._reader = self.store.follower(self.block_ms)
        n = await self._reload()
        if self._reader is not None:
            self._task = asyncio.create_task(self._follow())
        return n

    async def _follow(self) -> None:
        delay = 0.5
        while not self._stopping:
            try:
                if self._reader is None:
                    self._reader = self.store.follower(self.block_ms)
                    log.info("index sync reconnected; resuming after event %s", self.position)
                    delay = 0.5
                events = await self.store.read_events(self._reader, self.position, self.block_ms)
                # behind by more than the stream keeps (after a disconnect, or reading slower than the
                # writes): the events after our position are partly gone, so read the whole set again
                if events and await self.store.missed_since(self.position):
                    await self._reload()
                    log.warning("index sync fell behind the trimmed event stream; reloaded the store")
                    continue
                own = self.store.origin.encode()
                todo = []
                for event_id, origin, raw_id in events:
                    item_id = stored_id(raw_id)
                    # our own writes are indexed by the POST -- unless its reply from Redis was lost after the
                    # write landed, so the POST failed here while the item is in the store
                    if item_id is not None and (origin != own or item_id not in self.index):
                        todo.append(item_id)
                if todo:
                    await self._index_ids(list(dict.fromkeys(todo)))
                self.position = self.store.advance(self.position, events)
                delay = 0.5
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self._stopping:
                    break
                log.warning(
                    "index sync lost the store (%s); retrying in %.1fs from event %s", exc, delay, self.position
                )
                await self._close_reader()
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    async def _close_reader(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None:
            try:
                await asyncio.wait_for(reader.aclose(), 2.0)
            except Exception:
                pass

    async def stop(self) -> None:
        """Stops following. A cancellation that lands while redis-py's blocking XREAD is timing out can
        be swallowed inside redis-py (seen with redis 8.1 on Python 3.11: the task then read on
        forever and shutdown hung), so the loop also checks a flag, and the cancel is repeated until the
        task ends -- within one blocking read's timeout at most, after which it is abandoned."""
        self._stopping = True
        task, self._task = self._task, None
        if task is not None:
            grace = self.block_ms / 1000 + 12.0  # the follower's read timeout (block + 10 s), and a margin
            deadline = asyncio.get_running_loop().time() + grace
            while not task.done() and asyncio.get_running_loop().time() < deadline:
                task.cancel()
                await asyncio.wait({task}, timeout=0.25)
            if task.done():
                if not task.cancelled() and task.exception() is not None:
                    log.warning("index sync ended with %r", task.exception())
            else:
                log.error("index sync did not stop within %.1fs; abandoning it", grace)
        await self._close_reader()
