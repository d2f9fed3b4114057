"""A bound on the bytes of decoded images in flight. An image decodes to its full pixels before it is resized (40 MP:
160 MB as PIL stores RGB, plus a full-size RGB copy for modes converted before resizing), and the thread pool decodes
many at once: a handful of small uploads of huge images could exhaust a replica's memory. Each decode reserves its
peak (``coldproxy.preprocess.image_cost``, from the header) first and waits while the budget is spent -- at most
``wait_s``, then 503 with Retry-After; one image alone is always let through (its size is already capped by
``max_image_pixels``). A batch reserves per image, while that image decodes, not for the whole batch's inference."""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager

from coldproxy.errors import QueueFull


class DecodeBudget:
    def __init__(self, max_bytes: int, wait_s: float = 10.0):
        self.max_bytes, self.wait_s, self.in_flight = max_bytes, wait_s, 0
        self._changed = asyncio.Condition()

    @asynccontextmanager
    async def reserve(self, need: int):
        """Hold ``need`` bytes of the budget; ``QueueFull`` (503) when they are not free within ``wait_s``."""
        async with self._changed:
            try:
                await asyncio.wait_for(
                    self._changed.wait_for(lambda: self.in_flight == 0 or self.in_flight + need <= self.max_bytes),
                    self.wait_s,
                )
            except TimeoutError:
                raise QueueFull(
                    f"images being decoded hold the decode budget (COLDPROXY_MAX_DECODE_BYTES); waited "
                    f"{self.wait_s:g} s"
                ) from None
            self.in_flight += need
        try:
            yield
        finally:
            async with self._changed:
                self.in_flight -= need
                self._changed.notify_all()
