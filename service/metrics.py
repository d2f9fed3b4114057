"""Prometheus metrics, one registry per app instance (so several apps can live in one process), and the
ASGI middleware that counts and times every HTTP request by route."""

from __future__ import annotations

import time
from contextlib import contextmanager

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("coldproxy_requests_total", "HTTP requests", ["route", "method", "status"], registry=r)
        self.latency = Histogram("coldproxy_request_seconds", "HTTP request latency", ["route", "method"], buckets=LATENCY_BUCKETS, registry=r)
        self.stage = Histogram("coldproxy_stage_seconds", "Pipeline stage latency", ["stage"], buckets=LATENCY_BUCKETS, registry=r)
        self.batch_size = Histogram("coldproxy_batch_size", "Items per model call", ["graph"], buckets=(1, 2, 4, 8, 16, 32, 64, 128), registry=r)
        self.lookups = Counter("coldproxy_item_lookups_total", "Embedding lookups by catalog (items, bundles) and source",
                               ["catalog", "source"], registry=r)
        self.queue_depth = Gauge("coldproxy_batch_queue_depth", "Items waiting for the micro-batcher", registry=r)
        self.items_indexed = Gauge("coldproxy_index_items", "Entries in the FAISS index by catalog and kind", ["catalog", "kind"],
                                   registry=r)
        self.sync_reloads = Counter("coldproxy_sync_reloads_total", "Full index reloads from the store by catalog: start-up, "
                                    "and a replica that fell behind the trimmed event stream", ["catalog"], registry=r)

    @contextmanager
    def time_stage(self, stage: str):
        t = time.perf_counter()
        try:
            yield
        finally:
            self.stage.labels(stage).observe(time.perf_counter() - t)

    def stage_seconds(self) -> dict[str, float]:
        """Total seconds spent so far in each pipeline stage (the stage histograms' sums), for benchmarks."""
        return {smp.labels["stage"]: smp.value for fam in self.registry.collect() if fam.name == "coldproxy_stage_seconds"
                for smp in fam.samples if smp.name.endswith("_sum")}


METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})


class RequestMetrics:
    """Plain ASGI middleware: request count by (route, method, status) and latency by (route, method).

    Starlette's ``@app.middleware("http")`` runs each request through a task group and memory streams;
    this only wraps ``send`` to see the status, which is all it needs."""

    def __init__(self, app, metrics: Metrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        t = time.perf_counter()
        status = 500

        async def send_status(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            path = getattr(scope.get("route"), "path", "unmatched")  # the router sets it on the shared scope
            # the method comes from the client: any string would be a new label value (unbounded series)
            method = scope["method"] if scope["method"] in METHODS else "other"
            self.metrics.requests.labels(path, method, str(status)).inc()
            self.metrics.latency.labels(path, method).observe(time.perf_counter() - t)
