"""Keeps this replica's FAISS index in step with the shared store.

On start it subscribes to the store's item-written channel and only then loads every stored
cold item (so nothing written in between is missed); afterwards each announced item ID is read
from the store and upserted into the index. When the connection drops it reconnects with a
back-off and reloads everything, covering any announcement it missed while away. Its own
announcements are skipped only when the index already holds the item (a POST whose Redis reply was
lost after the write landed did not index it).
"""

from __future__ import annotations

import asyncio
import logging

import numpy as np

from service.storage.index import ItemIndex
from service.metrics import Metrics
from service.storage.store import RedisStore, stored_id

log = logging.getLogger("coldproxy.sync")


class IndexSync:
    def __init__(self, store: RedisStore, index: ItemIndex, metrics: Metrics, warm: dict[str, int], catalog: str = "items"):
        self.store, self.index, self.metrics, self.warm, self.catalog = store, index, metrics, warm, catalog
        self._task: asyncio.Task | None = None
        self._pubsub = None

    def add(self, item_ids: list[str], emb: np.ndarray) -> None:
        """Upsert cold items into this replica's index (its own POSTs, and what the store announces)."""
        self.index.upsert(item_ids, emb)
        self.metrics.items_indexed.labels(self.catalog, "cold").set(len(self.index) - len(self.warm))

    async def _index_ids(self, item_ids: list[str]) -> int:
        found = await self.store.get_many([i for i in item_ids if i not in self.warm])
        if found:
            self.add(list(found), np.stack(list(found.values())))
        return len(found)

    async def _connect(self) -> int:
        self._pubsub = await self.store.subscribe()
        return await self._index_ids(await self.store.all_ids())

    async def start(self) -> int:
        """Initial load (raises if the store fails); then follows announcements in the background."""
        n = await self._connect()
        if self._pubsub is not None:
            self._task = asyncio.create_task(self._follow())
        return n

    async def _follow(self) -> None:
        delay = 0.5
        while True:
            try:
                if self._pubsub is None:
                    await self._connect()
                    log.info("index sync reconnected and reloaded the store")
                async for msg in self._pubsub.listen():
                    if msg.get("type") == "message":
                        origin, _, raw_id = bytes(msg["data"]).partition(b" ")
                        item_id = stored_id(raw_id)
                        if item_id is not None and (origin != self.store.origin.encode() or item_id not in self.index):
                            # our own writes are indexed by the POST -- unless its reply from Redis was lost
                            # after the write landed, so the POST failed here while the item is in the store
                            await self._index_ids([item_id])
                        delay = 0.5
                raise ConnectionError("subscription ended")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("index sync lost the store (%s); retrying in %.1fs", exc, delay)
                await self._close_pubsub()
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    async def _close_pubsub(self) -> None:
        ps, self._pubsub = self._pubsub, None
        if ps is not None:
            try:
                await ps.aclose()
            except Exception:
                pass

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
        await self._close_pubsub()
