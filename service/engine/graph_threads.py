"""The long-lived threads that run the model graphs.

Micro-batches, unbatched posts, POST /v1/items:batch and re-gating all run their graphs here, so
at most ``batch_workers`` graph calls run at once -- what the ONNX Runtime thread split
(cores // batch_workers) assumes; anyio's shared pool would let decodes and graph calls pile up
on up to 40 threads. The threads are also the ones the pipeline's warm-up ran on
(``on_every_thread``), so per-thread provider state is built at start-up (on a GPU a first call on a
fresh thread costs twice a warm one: bench/results/design_measurements.md).

``Admission`` is the back-pressure of the work that does not go through the micro-batcher's queue
(POST /v1/items:batch, re-gating, bundle posts): at most ``COLDPROXY_BATCH_QUEUE_MAX`` items waiting
or running at once, beyond that a 503 with Retry-After, as the batcher's full queue answers.
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager

from coldproxy.errors import QueueFull


class GraphThreads:
    def __init__(self, workers: int, init=None):
        """``init()`` runs once at the start of each thread (per-thread library settings)."""
        self.n = max(1, workers)
        self.pool = ThreadPoolExecutor(self.n, thread_name_prefix="coldproxy-graphs", initializer=init)

    async def run(self, fn, *args):
        """``fn(*args)`` on one of the graph threads, awaited without blocking the event loop."""
        return await asyncio.get_running_loop().run_in_executor(self.pool, fn, *args)

    async def on_every_thread(self, fn) -> list:
        """``fn()`` once on each thread of the pool (a barrier keeps any thread from taking two)."""
        barrier = threading.Barrier(self.n)

        def once():
            barrier.wait(timeout=300)
            return fn()

        return await asyncio.gather(*(self.run(once) for _ in range(self.n)))

    def close(self) -> None:
        self.pool.shutdown(wait=False)  # queued calls still finish


class Admission:
    """Items admitted to graph work outside the micro-batcher, bounded (one per event loop)."""

    def __init__(self, limit: int):
        self.limit, self.pending = max(1, limit), 0

    @asynccontextmanager
    async def admit(self, items: int):
        """Hold ``items`` places while the work runs; ``QueueFull`` when they do not fit (a request larger
        than the whole limit is admitted alone, so it cannot be refused forever)."""
        if self.pending and self.pending + items > self.limit:
            raise QueueFull(f"{self.pending} items are already waiting for the model")
        self.pending += items
        try:
            yield
        finally:
            self.pending -= items
