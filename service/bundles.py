"""Bundles over HTTP: the bundle recommender package loaded for serving, its catalog (Redis namespace
``<prefix>:bundles:<package version>``, FAISS index, sync), and the write path of a new bundle.

A bundle is posted with its member item IDs (catalogue items, with or without user interactions);
its vector comes from ``coldproxy.bundle_recommender.BundleEmbedder`` (the package's ONNX sampler and
gate) off the event loop, is stored in Redis with the members, and indexed for ranking.
"""

from __future__ import annotations

import numpy as np
from anyio import to_thread

from coldproxy.bundle_recommender import BundleEmbedder, BundleVectors, load_bundle_recommender
from coldproxy.config import ServiceSettings
from service.catalog import Catalog
from service.metrics import Metrics
from service.store import open_store


class UnknownMembers(ValueError):
    def __init__(self, unknown: list[str]):
        super().__init__(f"unknown member item_ids: {unknown}")
        self.unknown = unknown


class BundleServing:
    @classmethod
    async def open(cls, s: ServiceSettings, metrics: Metrics) -> "BundleServing":
        self = cls()
        self.rec = await to_thread.run_sync(load_bundle_recommender, s.bundle_recommender_dir)
        self.version = self.rec.version
        self.embedder = await to_thread.run_sync(lambda: BundleEmbedder(self.rec, s.ort_options()))
        self.metrics = metrics
        a = self.rec.arrays
        self.item_row = {str(x): i for i, x in enumerate(a["item_ids"])}
        store = await open_store(s, f"{s.redis_prefix}:bundles", self.version, a["bundle_emb"].shape[1])
        self.catalog = Catalog("bundles", [str(u) for u in a["user_ids"]], a["user_emb"], [str(b) for b in a["bundle_ids"]],
                               a["bundle_emb"], store, metrics, s.local_reads)
        try:
            await self.catalog.start()
        except Exception:
            await self.catalog.close()
            raise
        return self

    def member_rows(self, item_ids: list[str]) -> np.ndarray:
        """Rows of the distinct member items, in first-seen order; ``UnknownMembers`` names any the
        package's catalogue does not hold."""
        distinct = list(dict.fromkeys(item_ids))
        unknown = [i for i in distinct if i not in self.item_row]
        if unknown:
            raise UnknownMembers(unknown)
        return np.array([self.item_row[i] for i in distinct], np.int64)

    async def embed(self, rows: list[np.ndarray]) -> BundleVectors:
        with self.metrics.time_stage("bundle_embed"):
            return await to_thread.run_sync(self.embedder.embed, rows)
