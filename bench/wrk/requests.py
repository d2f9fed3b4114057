"""Request lines for ``bench/wrk/reads.lua``: ingests some items into a running service (so half of
the reads hit new items, as in ``python -m loadtest``), then writes GET and rank lines built with the
load generator's own discovery and candidate draw.

    python bench/wrk/requests.py http://127.0.0.1:8000 /tmp   # -> /tmp/get.txt, /tmp/rank.txt
"""

from __future__ import annotations

import argparse
import asyncio
import random
from pathlib import Path

import orjson

from coldproxy.config import DEFAULT_DATASETS
from loadtest.payloads import Payloads
from loadtest.runner import Scenarios, StatusClient, draw_candidates, pick_one, run_load


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("url")
    p.add_argument("out", type=Path)
    p.add_argument("--data", type=Path, default=DEFAULT_DATASETS / "movielens-posters")
    p.add_argument("--ingest", type=int, default=300)
    p.add_argument("--candidates", type=int, default=1000)
    a = p.parse_args()
    sc = Scenarios(Payloads.from_movielens(a.data))

    async def prepare() -> None:
        await run_load(a.url, "ingest", sc, requests=a.ingest, duration=600, concurrency=32)
        async with StatusClient(a.url, timeout=30) as c:
            await sc.discover(c)

    asyncio.run(prepare())
    a.out.mkdir(parents=True, exist_ok=True)
    with (a.out / "get.txt").open("w") as f:
        for _ in range(4000):
            f.write(f"GET /v1/items/{pick_one(sc.known_items, sc.ingested)}/embedding\n")
    with (a.out / "rank.txt").open("w") as f:
        for _ in range(500):
            body = {
                "user_id": random.choice(sc.known_users),
                "item_ids": draw_candidates(sc.known_items, sc.ingested, a.candidates),
            }
            f.write(f"POST /v1/rank {orjson.dumps(body).decode()}\n")
    print(f"{len(sc.ingested)} items ingested; wrote {a.out / 'get.txt'} and {a.out / 'rank.txt'}")


if __name__ == "__main__":
    main()
