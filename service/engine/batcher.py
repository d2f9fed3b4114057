"""Dynamic micro-batching of the model graphs across concurrent POST /v1/items requests.

Each request decodes and tokenises its own item in a worker thread (off the event loop, in
parallel), then queues it. ``workers`` batch loops each take the first waiting item, gather more
until ``max_batch`` items -- waiting up to ``max_wait_s`` for them only while every other worker is
busy -- and run the graphs once over the batch in a thread. The queue is bounded: when ``max_queue``
items are waiting, ``submit`` raises ``QueueFull`` at once (the route answers 503 with Retry-After)
instead of letting latency grow without bound.

Every submit ends, with a result or an error: a batch that fails is retried item by item, so only
the item that fails alone fails; a submit unanswered after ``deadline_s`` is a 503; stopping fails
what is queued and what is in flight; a worker that dies of anything but a stop marks the batcher
unhealthy (``healthy``, which /healthz reports) and later submits fail at once.
"""

from __future__ import annotations

import asyncio
import logging
import time

from anyio import to_thread

from coldproxy.errors import QueueFull, Unavailable, public_reason
from service.metrics import Metrics

log = logging.getLogger("coldproxy.batcher")


class MicroBatcher:
    def __init__(
        self,
        infer,
        metrics: Metrics,
        max_batch: int,
        max_wait_s: float,
        max_queue: int,
        workers: int,
        run=to_thread.run_sync,
        deadline_s: float = 30.0,
    ):
        """``run``: how a batch's ``infer`` call is run off the event loop (the service: ``GraphThreads.run``)."""
        self.infer, self.metrics, self.run, self.deadline_s = infer, metrics, run, deadline_s
        self.dead: str | None = None  # why a worker ended, when one did without being stopped
        self._stopped = False
        self.max_batch, self.max_wait_s, self.workers = max_batch, max_wait_s, workers
        self.queue: asyncio.Queue = asyncio.Queue(maxsize=max_queue)
        self._tasks: list[asyncio.Task] = []
        self._idle = 0  # workers waiting for an item

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._loop()) for _ in range(self.workers)]
        for task in self._tasks:
            task.add_done_callback(self._worker_ended)

    def _worker_ended(self, task: asyncio.Task) -> None:
        if self._stopped or task.cancelled():
            return
        self.dead = f"a batch worker ended: {public_reason(task.exception())}"  # answered by /healthz, to anyone
        log.error("a batch worker ended: %r; the service reports unhealthy", task.exception())

    @property
    def healthy(self) -> bool:
        return self.dead is None

    def check_room(self) -> None:
        """``QueueFull`` now when the queue is full, before a caller decodes an item it could not queue."""
        if self._stopped:
            raise QueueFull("service shutting down")
        if self.queue.full():
            raise QueueFull(f"{self.queue.maxsize} items are already waiting for the model")

    async def submit(self, prepared):
        """Queue one prepared item; returns what ``infer`` gives for it, or raises within ``deadline_s``."""
        if self._stopped:
            raise QueueFull("service shutting down")
        if self.dead is not None:
            raise Unavailable(f"the model is not running: {self.dead}")
        fut = asyncio.get_running_loop().create_future()
        try:
            self.queue.put_nowait((prepared, fut, time.perf_counter()))
        except asyncio.QueueFull:
            raise QueueFull(f"{self.queue.maxsize} items are already waiting for the model") from None
        self.metrics.queue_depth.set(self.queue.qsize())
        try:
            return await asyncio.wait_for(fut, self.deadline_s)
        except asyncio.TimeoutError:
            raise Unavailable(f"no answer from the model within {self.deadline_s:g} s") from None

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
                await self._answer(batch)
            except asyncio.CancelledError:  # stopped mid-batch: its requests get an answer, not a hang
                for _, fut, _ in batch:
                    if not fut.done():
                        fut.set_exception(QueueFull("service shutting down"))
                raise

    async def _answer(self, batch: list) -> None:
        """Run a batch; when it fails, each item once alone, so only the item that fails alone fails."""
        try:
            results = await self.run(self.infer, [p for p, _, _ in batch])
        except Exception as exc:
            if len(batch) == 1:
                log.exception("an item failed in the model")
                if not batch[0][1].done():
                    batch[0][1].set_exception(exc)
                return
            log.warning("a batch of %d failed (%r); retrying its items one by one", len(batch), exc)
            for item in batch:
                await self._answer([item])
            return
        for (_, fut, _), res in zip(batch, results):
            if not fut.done():  # done: the request was cancelled (client went away) or timed out
                fut.set_result(res)

    async def stop(self) -> None:
        self._stopped = True
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        while not self.queue.empty():
            _, fut, _ = self.queue.get_nowait()
            if not fut.done():
                fut.set_exception(QueueFull("service shutting down"))
