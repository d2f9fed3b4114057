"""A bound on the bytes of decoded images in flight. An image decodes to width x height x 3 bytes
(40 MP: 120 MB as RGB, more in PIL's intermediate modes) before it is resized, and the thread pool
decodes many at once: a handful of small uploads of huge images could exhaust a replica's memory.
Each decode reserves its size from the header first and waits while the budget is spent; one image
alone is always let through (its size is already capped by ``max_image_pixels``)."""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager

BYTES_PER_PIXEL = 4  # RGB(A) as PIL holds it while decoding


class DecodeBudget:
    def __init__(self, max_bytes: int):
        self.max_bytes, self.in_flight = max_bytes, 0
        self._changed = asyncio.Condition()

    @asynccontextmanager
    async def reserve(self, pixels: int):
        need = pixels * BYTES_PER_PIXEL
        async with self._changed:
            await self._changed.wait_for(lambda: self.in_flight == 0 or self.in_flight + need <= self.max_bytes)
            self.in_flight += need
        try:
            yield
        finally:
            async with self._changed:
                self.in_flight -= need
                self._changed.notify_all()
