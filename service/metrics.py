"""Prometheus metrics, one registry per app instance (so several apps can live in one process), and the
ASGI middleware that counts and times every HTTP request by route."""

from __future__ import annotations

import time
from contextlib import contextmanager

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("coldproxy_requests_total", "HTTP requests", ["route", "method", "status"], registry=r)
        self.latency = Histogram(
            "coldproxy_request_seconds",
            "HTTP request latency",
            ["route", "method"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.stage = Histogram(
            "coldproxy_stage_seconds", "Pipeline stage latency", ["stage"], buckets=LATENCY_BUCKETS, registry=r
        )
        self.batch_size = Histogram(
            "coldproxy_batch_size", "Items per model call", ["graph"], buckets=(1, 2, 4, 8, 16, 32, 64, 128), registry=r
        )
        self.lookups = Counter(
            "coldproxy_item_lookups_total",
            "Embedding lookups by catalog (items, bundles) and source",
            ["catalog", "source"],
            registry=r,
        )
        self.queue_depth = Gauge("coldproxy_batch_queue_depth", "Items waiting for the micro-batcher", registry=r)
        self.items_indexed = Gauge(
            "coldproxy_index_items", "Entries in the FAISS index by catalog and kind", ["catalog", "kind"], registry=r
        )
        unit = tuple(round(x, 2) for x in np.linspace(0.05, 1.0, 20))
        signed = tuple(round(x, 2) for x in np.linspace(-0.9, 1.0, 20))
        self.proxy_norm_ratio = Histogram(
            "coldproxy_proxy_norm_ratio",
            "New items' served vector norm over the warm items' mean norm",
            ["version"],
            registry=r,
            buckets=(0.1, 0.25, 0.5, 0.75, 0.9, 1.1, 1.25, 1.5, 2.0, 4.0, 10.0),
        )
        self.proxy_warm_cosine = Histogram(
            "coldproxy_proxy_warm_cosine",
            "Cosine of new items' served vectors with the warm items' mean direction",
            ["version"],
            buckets=signed,
            registry=r,
        )
        self.fusion_weight = Histogram(
            "coldproxy_fusion_weight",
            "New items' modality fusion weights",
            ["version", "modality"],
            buckets=unit,
            registry=r,
        )
        self.expert_weight = Histogram(
            "coldproxy_expert_weight",
            "New items' cold-aware gate weights by expert",
            ["version", "expert"],
            buckets=unit,
            registry=r,
        )
        self.graduation_cosine = Histogram(
            "coldproxy_graduation_cosine",
            "Cosine of a new item's proxy with the ID embedding the recommender learnt for it (warm-up path)",
            ["version"],
            buckets=signed,
            registry=r,
        )
        self.graduation_score_corr = Histogram(
            "coldproxy_graduation_score_correlation",
            "Correlation over sampled users of a new item's proxy scores with its learnt ID embedding's",
            ["version"],
            buckets=signed,
            registry=r,
        )
        self.reembedded = Counter(
            "coldproxy_reembedded_total",
            "Stored items re-embedded for a package being rolled "
            "out, by version and result (reembedded, refreshed, present, graduated, no_features, "
            "failed, shadow, shadow_failed)",
            ["version", "result"],
            registry=r,
        )
        self.rollout_progress = Gauge(
            "coldproxy_rollout_progress",
            "Share of the stored items the package being rolled out holds (1 when complete)",
            ["version"],
            registry=r,
        )
        self.serving_version = Gauge(
            "coldproxy_serving_version",
            "1 for the package version this replica serves, 0 for a candidate (shadow, canary)",
            ["version", "role"],
            registry=r,
        )
        self.answers = Counter(
            "coldproxy_answers_total",
            "Rank and recommendation answers by the package version that made them (a canary's share shows here)",
            ["route", "version"],
            registry=r,
        )
        self.index_ann_ready = Gauge(
            "coldproxy_index_ann_ready",
            "1 once the HNSW graph serves searches (0 while it is built and the exact index serves)",
            ["catalog"],
            registry=r,
        )
        self.sync_reloads = Counter(
            "coldproxy_sync_reloads_total",
            "Full index reloads from the store by catalog: start-up, "
            "and a replica that fell behind the trimmed event stream",
            ["catalog"],
            registry=r,
        )

    @contextmanager
    def time_stage(self, stage: str):
        t = time.perf_counter()
        try:
            yield
        finally:
            self.stage.labels(stage).observe(time.perf_counter() - t)

    def stage_seconds(self) -> dict[str, float]:
        """Total seconds spent so far in each pipeline stage (the stage histograms' sums), for benchmarks."""
        return {
            smp.labels["stage"]: smp.value
            for fam in self.registry.collect()
            if fam.name == "coldproxy_stage_seconds"
            for smp in fam.samples
            if smp.name.endswith("_sum")
        }


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
