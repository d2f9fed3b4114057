"""Ingestion throughput: one item per POST /v1/items vs POST /v1/items:batch, same server, same items.

Run against a live service on loopback (``coldproxy serve``); real posters and texts from
MovieLens-posters, each under a fresh ID. Prints and writes bench/results/ingest_batch.json.

    python bench/ingest_batch.py [--url http://127.0.0.1:8000] [--items 256] [--concurrency 8] [--batch 8 32]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import time
import uuid

import httpx
from results_dir import RESULTS

from coldproxy.config import DEFAULT_DATASETS
from loadtest.payloads import Payloads
from loadtest.runner import require_loopback


async def run(url: str, bodies: list[dict], concurrency: int, batch: int | None) -> dict:
    chunks = [bodies[i : i + batch] for i in range(0, len(bodies), batch)] if batch else [[b] for b in bodies]
    queue: asyncio.Queue = asyncio.Queue()
    for ch in chunks:
        queue.put_nowait(ch)
    lat, stored, errors = [], 0, 0
    async with httpx.AsyncClient(base_url=url, timeout=120) as c:

        async def worker():
            nonlocal stored, errors
            while not queue.empty():
                ch = queue.get_nowait()
                t = time.perf_counter()
                if batch:
                    r = await c.post("/v1/items:batch", json={"items": ch})
                    ok = r.status_code == 200
                    n_ok = r.json()["stored"] if ok else 0
                else:
                    r = await c.post("/v1/items", json=ch[0])
                    n_ok = int(r.status_code == 200)
                lat.append(time.perf_counter() - t)
                stored += n_ok
                errors += len(ch) - n_ok

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - t0
    lat.sort()
    return {
        "mode": f"batch {batch}" if batch else "single",
        "concurrency": concurrency,
        "items": len(bodies),
        "stored": stored,
        "errors": errors,
        "wall_s": wall,
        "items_per_s": stored / wall,
        "request_p50_ms": 1000 * lat[len(lat) // 2],
        "request_p99_ms": 1000 * lat[min(len(lat) - 1, int(0.99 * len(lat)))],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", default="http://127.0.0.1:8000")
    p.add_argument("--items", type=int, default=256)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--batch", type=int, nargs="+", default=[8, 32])
    a = p.parse_args()
    require_loopback(a.url)
    pay = Payloads.from_movielens(DEFAULT_DATASETS / "movielens-posters")
    items = [it for it in pay.items if it[2] is not None][: a.items]
    rows = []
    for mode in [None, *a.batch]:
        tag = uuid.uuid4().hex[:6]
        bodies = [
            {
                "item_id": f"bench-{tag}-{mid}",
                "text": text,
                "image_base64": base64.b64encode(poster.read_bytes()).decode(),
            }
            for mid, text, poster in items
        ]
        rows.append(
            asyncio.run(run(a.url, bodies, a.concurrency if mode is None else max(1, a.concurrency // 4), mode))
        )
        print(json.dumps(rows[-1]))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "ingest_batch.json").write_text(json.dumps({"url": a.url, "results": rows}, indent=2))


if __name__ == "__main__":
    main()
