"""Dynamic micro-batching of the model graphs across concurrent POST /v1/items requests.

Each request decodes and tokenises its own item in a worker thread (off the event loop, in
parallel), then queues it. ``workers`` batch loops each take the first waiting item, gather more
until ``max_batch`` items -- waiting up to ``max_wait_s`` for them only while every other worker is
busy -- and run the graphs once over the batch in a thread. The queue is bounded: when ``max_queue`` items are waiting, ``submit`` raises
``QueueFull`` at once (the route answers 503 with Retry-After) instead of letting latency grow
without bound.
"""

from __future__ import annotations

import asyncio
import logging
import time

from anyio import to_thread

from coldproxy.errors import QueueFull
from service.metrics import Metrics

log = logging.getLogger("coldproxy.batcher")


class MicroBatcher:
    def __init__(self, infer, metrics: Metrics, max_batch: int, max_wait_s: float, max_queue: int, workers: int,
                 run=to_thread.run_sync):
        """``run``: how a batch's ``infer`` call is run off the event loop (the service: ``GraphThreads.run``)."""
        self.infer, self.metrics, self.run = infer, metrics, run
        self.max_batch, self.max_wait_s, self.workers = max_batch, max_wait_s, workers
        self.queue: asyncio.Queue = asyncio.Queue(maxsize=max_queue)
        self._tasks: list[asyncio.Task] = []
        self._idle = 0  # workers waiting for an item

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._loop()) for _ in range(self.workers)]

    async def submit(self, prepared):
        """Queue one prepared item; returns what ``infer`` gives for it."""
        fut = asyncio.get_running_loop().create_future()
        try:
            self.queue.put_nowait((prepared, fut, time.perf_counter()))
        except asyncio.QueueFull:
            raise QueueFull(f"{self.queue.maxsize} items are already waiting for the model") from None
        self.metrics.queue_depth.set(self.queue.qsize())
        return await fut

    async def _loop(self) -> None:
        while True:
            self._idle += 1
            try:
                batch = [await self.queue.get()]
            finally:
                self._idle -= 1
            # Another worker idle: there is hardware free now, so take what is queued and go; waiting would
            # only delay a lone request (at concurrency 1, by max_wait_s every time). Every other worker
            # busy: wait up to max_wait_s for a fuller batch, which costs no idle hardware.
            deadline = time.perf_counter() + (0.0 if self._idle else self.max_wait_s)
            while len(batch) < self.max_batch:
                try:
                    batch.append(self.queue.get_nowait())
                    continue
                except asyncio.QueueEmpty:
                    pass
                remaining = deadline - time.perf_counter()
                if remaining <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(self.queue.get(), remaining))
                except asyncio.TimeoutError:
                    break
            self.metrics.queue_depth.set(self.queue.qsize())
            now = time.perf_counter()
            for _, _, queued in batch:
                self.metrics.stage.labels("queue").observe(now - queued)
            try:
                results = await self.run(self.infer, [p for p, _, _ in batch])
            except Exception as exc:  # a failed batch fails its own requests, never the loop
                log.exception("batch of %d failed", len(batch))
                for _, fut, _ in batch:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            for (_, fut, _), res in zip(batch, results):
                if not fut.done():  # done: the request was cancelled (client went away)
                    fut.set_result(res)

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        while not self.queue.empty():
            _, fut, _ = self.queue.get_nowait()
            if not fut.done():
                fut.set_exception(QueueFull("service shutting down"))
