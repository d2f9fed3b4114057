"""What a running service holds: the current ``Serving`` (a loaded model bundle, its ONNX pipeline and
catalogs, and the bundle recommender when there is one), the app-wide ``State`` (settings, metrics,
auth, reload), and the FastAPI dependencies routes use to reach them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Annotated

import faiss
from anyio import to_thread
from fastapi import Depends, HTTPException, Request

from coldproxy.bundle import load_bundle
from coldproxy.config import ServiceSettings
from service.auth import KeyRing, RateLimiter
from service.batcher import MicroBatcher
from service.bundles import BundleServing
from service.catalog import Catalog
from service.graph_threads import GraphThreads
from service.metrics import Metrics
from service.pipeline import ProxyPipeline
from service.store import open_store

log = logging.getLogger("coldproxy")


class Serving:
    """One loaded bundle and what hangs off it: ONNX pipeline, micro-batcher, the item catalog (store
    namespace, FAISS index, sync) and, when its directory exists, the bundle recommender.

    Requests take the current ``Serving`` once and use it throughout, so a bundle reload never
    mixes two bundles' spaces inside one request.
    """

    @classmethod
    async def open(cls, settings: ServiceSettings, metrics: Metrics) -> "Serving":
        self = cls()
        s = settings
        self.bundle = await to_thread.run_sync(load_bundle, s.bundle_dir)  # hashes every file: off the loop
        self.version = self.bundle.manifest.version
        dim = self.bundle.manifest.dims.id_dim
        self.pipeline = await to_thread.run_sync(
            lambda: ProxyPipeline(self.bundle, metrics, s.ort_options(), s.max_image_pixels,
                                  {"auto": None, "on": True, "off": False}[s.pad_image_batches]))
        # OpenMP's thread count is per calling thread: set on the event loop's thread only, the anchor
        # searches on the graph threads ran 2-thread FAISS beside the encoders (4.1 ms an item at c=32)
        self.graphs = GraphThreads(s.batch_workers, lambda: faiss.omp_set_num_threads(s.faiss_threads))
        t = time.perf_counter()
        shapes = await self.graphs.on_every_thread(lambda: self.pipeline.warm_up(max(s.batch_max_size, s.max_batch_items)))
        log.info("graphs warmed up on %d threads (%d image batch shapes) in %.1f s", self.graphs.n, shapes[0],
                 time.perf_counter() - t)
        self.batcher = None
        if s.micro_batching:
            self.batcher = MicroBatcher(self.pipeline.infer, metrics, s.batch_max_size, s.batch_max_wait_ms / 1000,
                                        s.batch_queue_max, s.batch_workers, self.graphs.run)
            self.batcher.start()
        self.bundles = None
        try:
            store = await open_store(s, s.redis_prefix, self.version, dim)
            faiss.omp_set_num_threads(s.faiss_threads)
            b = self.bundle
            self.items = Catalog("items", b.user_ids, b.user_emb, b.item_ids, b.item_emb, store, metrics, s.local_reads)
            n_cold = await self.items.start()
            if s.bundle_recommender_dir is not None and Path(s.bundle_recommender_dir).exists():
                self.bundles = await BundleServing.open(s, metrics)
        except Exception:
            await self.close()
            raise
        log.info("bundle %s loaded: %d users, %d warm items, %d cold items from the store, providers %s; %s",
                 self.version, len(self.items.users), len(self.items.warm), n_cold, self.pipeline.providers,
                 f"bundle recommender {self.bundles.version}" if self.bundles else "no bundle recommender")
        return self

    async def close(self) -> None:
        if getattr(self, "batcher", None) is not None:
            await self.batcher.stop()
        if getattr(self, "graphs", None) is not None:
            self.graphs.close()
        for catalog in (getattr(self, "items", None), getattr(getattr(self, "bundles", None), "catalog", None)):
            if catalog is not None:
                await catalog.close()


class State:
    """Settings, metrics, auth and the current ``Serving``; routes get it through ``AppState``."""

    def __init__(self, settings: ServiceSettings):
        self.settings = settings
        self.metrics = Metrics()
        self.keys = KeyRing([k for k in [settings.api_key, *settings.api_keys] if k], settings.api_keys_file)
        self.limiter = RateLimiter(settings.rate_limit_rps, settings.rate_limit_burst)
        self.serving: Serving | None = None
        self._reload_lock = asyncio.Lock()
        self._retiring: set[asyncio.Task] = set()

    @property
    def ready(self) -> bool:
        return self.serving is not None

    async def start(self) -> None:
        self.serving = await Serving.open(self.settings, self.metrics)

    async def reload(self) -> tuple[str, str]:
        """Load the bundle directory again; swap only once the new bundle is fully ready.

        Raises ``BundleError``/``StoreUnavailable`` and keeps serving the old bundle on failure.
        Returns (previous version, serving version).
        """
        async with self._reload_lock:
            old = self.serving
            new = await Serving.open(self.settings, self.metrics)
            if old is not None and new.version == old.version:
                await new.close()
                return old.version, old.version
            self.serving = new
            if old is not None:
                task = asyncio.create_task(self._retire(old))
                self._retiring.add(task)
                task.add_done_callback(self._retiring.discard)
            log.info("now serving bundle %s (was %s)", new.version, old.version if old else None)
            return (old.version if old else ""), new.version

    async def _retire(self, old: Serving) -> None:
        try:
            await asyncio.sleep(self.settings.reload_grace_s)  # let requests that hold it finish
        finally:
            await old.close()

    async def stop(self) -> None:
        serving, self.serving = self.serving, None
        retiring = list(self._retiring)
        for task in retiring:
            task.cancel()
        await asyncio.gather(*retiring, return_exceptions=True)
        if serving is not None:
            await serving.close()


async def get_state(request: Request) -> State:  # async: FastAPI runs plain-def dependencies in a thread pool
    return request.app.state.coldproxy


AppState = Annotated[State, Depends(get_state)]


async def get_serving(st: AppState) -> Serving:
    if st.serving is None:
        raise HTTPException(503, "no bundle loaded yet", headers={"Retry-After": "1"})
    return st.serving


Live = Annotated[Serving, Depends(get_serving)]


def access(write: bool):
    """Dependency: API key (writes always, reads when ``auth_reads``) then the per-client rate limit."""

    async def check(request: Request, st: AppState) -> None:  # async: runs on the loop, no thread races
        who = None
        if st.keys.enabled:
            who = st.keys.identify(request.headers.get("x-api-key"))
            if who is None and (write or st.settings.auth_reads):
                raise HTTPException(401, "missing or wrong X-API-Key")
        if st.limiter.enabled:
            client = f"key:{who}" if who else f"addr:{request.client.host if request.client else 'unknown'}"
            wait = st.limiter.acquire(client)
            if wait > 0:
                raise HTTPException(429, f"rate limit of {st.settings.rate_limit_rps:g} requests/s exceeded",
                                    headers={"Retry-After": RateLimiter.retry_after(wait)})

    return Depends(check)
