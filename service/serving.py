"""One loaded model package and what hangs off it (``Serving``): its ONNX pipeline and micro-batcher, the item
catalog (store namespace, FAISS index, sync) and, when its directory exists, the bundle model package.
``service.state`` holds the current one and swaps it on a reload.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import faiss
import numpy as np
from anyio import to_thread

from coldproxy.config import ServiceSettings
from coldproxy.errors import InvalidInput
from coldproxy.package import load_package
from service.bundle_serving import BundleServing
from service.drift import DriftMonitor
from service.engine.batcher import MicroBatcher
from service.engine.decode_budget import DecodeBudget
from service.engine.features import feature_width
from service.engine.graph_threads import Admission, GraphThreads
from service.engine.pipeline import Embedded, ProxyPipeline
from service.metrics import Metrics
from service.storage.catalog import Catalog, largest_norm
from service.storage.open import open_item_store, user_history
from service.storage.records import StoredItem

log = logging.getLogger("coldproxy")


class Serving:
    """One loaded model package and what hangs off it: ONNX pipeline, micro-batcher, the item catalog
    (store namespace, FAISS index, sync) and, when its directory exists, the bundle model package.

    Requests take the current ``Serving`` once and use it throughout, so a package reload never
    mixes two packages' spaces inside one request.
    """

    @classmethod
    async def open(
        cls, settings: ServiceSettings, metrics: Metrics, package_dir: Path | None = None, bundles: bool = True
    ) -> "Serving":
        """``package_dir`` (default: the settings') opened as a ``Serving``; ``bundles``: with the bundle
        recommender when one is configured (a candidate package in shadow goes without)."""
        self = cls()
        self.metrics, self.shadow = metrics, None  # shadow: the package being rolled out (service.rollout)
        # hashes every file: off the loop
        self.package = await to_thread.run_sync(load_package, package_dir or settings.package_dir)
        self.version = self.package.manifest.version
        self.cold_boost = settings.cold_boost
        self.decode_budget = DecodeBudget(settings.max_decode_bytes, settings.decode_wait_s)
        # an ID embedding sent for a new item may not be longer than any warm item's: one with a huge
        # norm would top every user's ranking
        self.max_item_norm = largest_norm(self.package.item_emb)
        dim = self.package.manifest.dims.id_dim
        experts = tuple(self.package.manifest.experts["experts"]) if self.package.has_experts else ()
        self.drift = DriftMonitor(metrics, self.version, self.package.user_emb, self.package.item_emb, experts)
        self.pipeline = await to_thread.run_sync(
            lambda: ProxyPipeline(
                self.package,
                metrics,
                settings.ort_options(),
                settings.max_image_pixels,
                {"auto": None, "on": True, "off": False}[settings.pad_image_batches],
            )
        )
        # OpenMP's thread count is per calling thread: set here on every graph thread too, or the anchor
        # searches there run multi-threaded FAISS beside the encoders (bench/results/design_measurements.md)
        self.graphs = GraphThreads(settings.batch_workers, lambda: faiss.omp_set_num_threads(settings.faiss_threads))
        self.admission = Admission(settings.batch_queue_max)
        t = time.perf_counter()
        largest = max(settings.batch_max_size, settings.max_batch_items)
        shapes = await self.graphs.on_every_thread(lambda: self.pipeline.warm_up(largest))
        log.info(
            "graphs warmed up on %d threads (%d image batch shapes) in %.1f s",
            self.graphs.n,
            shapes[0],
            time.perf_counter() - t,
        )
        self.batcher = None
        if settings.micro_batching:
            self.batcher = MicroBatcher(
                self.pipeline.infer,
                metrics,
                settings.batch_max_size,
                settings.batch_max_wait_ms / 1000,
                settings.batch_queue_max,
                settings.batch_workers,
                self.graphs.run,
                settings.batch_deadline_s,
            )
            self.batcher.start()
        self.bundles = None
        try:
            store = await open_item_store(
                settings, self.version, dim, self.package.encoder_fingerprint, feature_width(self.package.manifest.dims)
            )
            faiss.omp_set_num_threads(settings.faiss_threads)
            package = self.package
            self.items = Catalog(
                "items",
                package.user_ids,
                package.user_emb,
                package.item_ids,
                package.item_emb,
                store,
                metrics,
                settings.local_reads,
                settings.index_options(),
                package.id_fingerprint,
                package.score,
                settings.max_user_norm,
                settings.vector_norm_slack,
                settings.max_store_lookups,
                package.seen,
                package.proxy_ids,
                self.boosted(package.proxy_emb),
            )
            self.items.history = user_history(settings, store)
            n_cold = await self.items.start()
            if bundles and settings.bundle_package_dir is not None and Path(settings.bundle_package_dir).exists():
                # one bound for all graph work outside the micro-batcher: item and bundle posts share it
                self.bundles = await BundleServing.open(settings, metrics, self.admission)
        except Exception:
            await self.close()
            raise
        log.info(
            "model package %s loaded: %d users, %d items by ID vector, %d by the package's proxies, %d new items "
            "from the store, providers %s; %s",
            self.version,
            len(self.items.users),
            self.items.n_id,
            len(self.package.proxy_ids),
            n_cold,
            self.pipeline.providers,
            f"bundle recommender {self.bundles.version}" if self.bundles else "no bundle recommender",
        )
        return self

    def boosted(self, vectors: np.ndarray) -> np.ndarray:
        """New items' served vectors with the exploration boost (``cold_boost``), when there is one."""
        return (vectors * (1.0 + self.cold_boost)).astype(np.float32) if self.cold_boost else vectors

    def stored_record(self, result: Embedded) -> StoredItem:
        """What this package stores for an embedded new item: the served vector (with the exploration boost)
        and, with a cold-aware gate, the experts' outputs that re-gating needs. ``InvalidInput`` when not finite."""
        emb = self.boosted(result.embedding)
        if not np.isfinite(emb).all():
            raise InvalidInput("the model produced a non-finite embedding for this input; nothing was stored")
        if result.parts:
            return StoredItem(
                emb,
                result.modalities,
                result.parts["proxy"],
                result.parts["diffusion"],
                [float(a) for a in result.fusion_weights],
                0,
                anchor=result.parts.get("anchor"),
            )
        return StoredItem(emb, result.modalities, fusion_weights=[float(a) for a in result.fusion_weights])

    async def close(self) -> None:
        if getattr(self, "batcher", None) is not None:
            await self.batcher.stop()
        if getattr(self, "graphs", None) is not None:
            self.graphs.close()
        for catalog in (getattr(self, "items", None), getattr(getattr(self, "bundles", None), "catalog", None)):
            if catalog is not None:
                await catalog.close()
