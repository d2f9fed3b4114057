"""What a running service holds: the current ``Serving`` (a loaded model package, its ONNX pipeline and
catalogs, and the bundle model package when there is one), the app-wide ``State`` (settings, metrics,
auth, reload), and the FastAPI dependencies routes use to reach them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Annotated

import faiss
import numpy as np
from anyio import to_thread
from fastapi import Depends, Request

from coldproxy.package import load_package
from coldproxy.config import ServiceSettings
from coldproxy.errors import InsecureSettings, NotReady, RateLimited, Unauthorized
from service.auth import KeyRing, RateLimiter
from service.engine.batcher import MicroBatcher
from service.engine.decode_budget import DecodeBudget
from service.bundle_serving import BundleServing
from service.storage.catalog import Catalog
from service.engine.graph_threads import Admission, GraphThreads
from service.metrics import Metrics
from service.engine.pipeline import ProxyPipeline
from service.storage.store import open_store

log = logging.getLogger("coldproxy")


class Serving:
    """One loaded model package and what hangs off it: ONNX pipeline, micro-batcher, the item catalog
    (store namespace, FAISS index, sync) and, when its directory exists, the bundle model package.

    Requests take the current ``Serving`` once and use it throughout, so a package reload never
    mixes two packages' spaces inside one request.
    """

    @classmethod
    async def open(cls, settings: ServiceSettings, metrics: Metrics) -> "Serving":
        self = cls()
        # hashes every file: off the loop
        self.package = await to_thread.run_sync(load_package, settings.package_dir)
        self.version = self.package.manifest.version
        self.cold_boost = settings.cold_boost
        self.decode_budget = DecodeBudget(settings.max_decode_bytes)
        # an ID embedding sent for a new item may not be longer than any warm item's: one with a huge
        # norm would top every user's ranking
        self.max_item_norm = float(np.linalg.norm(self.package.item_emb, axis=1).max(initial=0.0))
        dim = self.package.manifest.dims.id_dim
        self.pipeline = await to_thread.run_sync(
            lambda: ProxyPipeline(self.package, metrics, settings.ort_options(), settings.max_image_pixels,
                                  {"auto": None, "on": True, "off": False}[settings.pad_image_batches]))
        # OpenMP's thread count is per calling thread: set here on every graph thread too, or the anchor
        # searches there run multi-threaded FAISS beside the encoders (bench/results/design_measurements.md)
        self.graphs = GraphThreads(settings.batch_workers, lambda: faiss.omp_set_num_threads(settings.faiss_threads))
        self.admission = Admission(settings.batch_queue_max)
        t = time.perf_counter()
        largest = max(settings.batch_max_size, settings.max_batch_items)
        shapes = await self.graphs.on_every_thread(lambda: self.pipeline.warm_up(largest))
        log.info("graphs warmed up on %d threads (%d image batch shapes) in %.1f s", self.graphs.n, shapes[0],
                 time.perf_counter() - t)
        self.batcher = None
        if settings.micro_batching:
            self.batcher = MicroBatcher(self.pipeline.infer, metrics, settings.batch_max_size,
                                        settings.batch_max_wait_ms / 1000, settings.batch_queue_max,
                                        settings.batch_workers, self.graphs.run, settings.batch_deadline_s)
            self.batcher.start()
        self.bundles = None
        try:
            store = await open_store(settings, settings.redis_prefix, self.version, dim)
            faiss.omp_set_num_threads(settings.faiss_threads)
            package = self.package
            self.items = Catalog("items", package.user_ids, package.user_emb, package.item_ids, package.item_emb, store,
                                 metrics, settings.local_reads)
            n_cold = await self.items.start()
            if settings.bundle_package_dir is not None and Path(settings.bundle_package_dir).exists():
                # one bound for all graph work outside the micro-batcher: item and bundle posts share it
                self.bundles = await BundleServing.open(settings, metrics, self.admission)
        except Exception:
            await self.close()
            raise
        log.info("model package %s loaded: %d users, %d warm items, %d cold items from the store, providers %s; %s",
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
        self.admin_keys = KeyRing(settings.admin_api_keys, settings.admin_api_keys_file)
        check_exposure(settings, self.keys.enabled or self.admin_keys.enabled)
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
        """Load the model package directory again; swap only once the new package is fully ready.

        Raises ``PackageError``/``StoreUnavailable`` and keeps serving the old package on failure.
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
            log.info("now serving model package %s (was %s)", new.version, old.version if old else None)
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
        raise NotReady("no model package loaded yet")
    return st.serving


Live = Annotated[Serving, Depends(get_serving)]


READ, WRITE, ADMIN = "read", "write", "admin"
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def check_exposure(settings: ServiceSettings, keys_configured: bool) -> None:
    """Safe by default: no service reachable beyond this machine takes anonymous writes unless told to."""
    if settings.host not in LOOPBACK and not keys_configured and not settings.allow_anonymous_writes:
        raise InsecureSettings(
            f"refusing to serve on {settings.host} without API keys: anyone who reaches the port could write items "
            "and reload the model. Set COLDPROXY_API_KEYS_FILE (and COLDPROXY_ADMIN_API_KEYS_FILE), or "
            "COLDPROXY_ALLOW_ANONYMOUS_WRITES=true to accept that")


def access(level: str):
    """Dependency: the per-client rate limit (failed keys count against the client's address), then
    the API key: with any key configured, writes need a write or admin key, admin routes an admin
    key, reads one when ``auth_reads``."""

    async def check(request: Request, st: AppState) -> None:  # async: runs on the loop, no thread races
        presented = request.headers.get("x-api-key")
        admin = st.admin_keys.identify(presented) if st.admin_keys.enabled else None
        who = admin or (st.keys.identify(presented) if st.keys.enabled else None)
        if st.limiter.enabled:
            client = f"key:{who}" if who else f"addr:{request.client.host if request.client else 'unknown'}"
            wait = st.limiter.acquire(client)
            if wait > 0:
                raise RateLimited(f"rate limit of {st.settings.rate_limit_rps:g} requests/s exceeded",
                                  RateLimiter.retry_after(wait))
        if not (st.keys.enabled or st.admin_keys.enabled):
            return  # no keys at all: a loopback demo, or anonymous writes allowed explicitly
        if level == ADMIN and admin is None:
            raise Unauthorized("admin routes need an admin X-API-Key (COLDPROXY_ADMIN_API_KEYS_FILE)")
        if who is None and (level == WRITE or st.settings.auth_reads):
            raise Unauthorized("missing or wrong X-API-Key")

    return Depends(check)
