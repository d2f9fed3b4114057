"""Scenarios, the bounded async load loop, and the report (JSON + PNG).

Each scenario is a function that sends one request with ``StatusClient``: the coldproxy client's requests, sent
once each and answered by their status unparsed, so the samples time the service and not the client's parsing. The loop
runs either closed-loop (``concurrency`` workers back to back) or open-loop at a fixed ``rate``
(requests/s, arrivals on a schedule, so a slow server shows up as latency, not as fewer requests).
It always stops by itself: after ``requests`` requests or ``duration`` seconds, whichever comes first.
"""

from __future__ import annotations

import asyncio
import gc
import ipaddress
import itertools
import json
import random
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import httpx
import numpy as np

from coldproxy.client import AsyncClient, Retry
from coldproxy.client.calls import Call
from coldproxy.client.http import request_args
from loadtest.payloads import BundlePayloads, Payloads

ITEM_SCENARIOS = ("ingest", "get", "rank", "recommend", "recommend_filtered", "mix")
BUNDLE_SCENARIOS = ("bundle_ingest", "bundle_get", "bundle_rank", "bundle_recommend")  # need a bundle recommender
SCENARIOS = ITEM_SCENARIOS + BUNDLE_SCENARIOS
MIX = (("get", 0.5), ("rank", 0.3), ("recommend", 0.15), ("ingest", 0.05))


def require_loopback(url: str) -> None:
    """Refuse any target that is not this machine: load is only ever sent to loopback."""
    host = urlparse(url).hostname or ""
    if host == "localhost":
        return
    try:
        if ipaddress.ip_address(host).is_loopback:
            return
    except ValueError:
        pass
    raise ValueError(f"refusing to send load to {host!r}: only loopback targets (127.0.0.0/8, ::1, localhost)")


@dataclass
class Sample:
    scenario: str
    start: float
    latency: float
    status: int  # 0 for a transport error


def pick_one(known: list[str], posted: list[str]) -> str:
    """One read target: from ``posted`` (this run's new items or bundles) with even odds when there are
    any, else from ``known`` (the ones the model was trained with)."""
    return random.choice(posted) if posted and random.random() < 0.5 else random.choice(known)


def draw_candidates(known: list[str], posted: list[str], count: int) -> list[str]:
    """``n`` rank candidates, half from ``posted`` (this run's new items, when there are any), half from
    ``known``. Drawn with one ``random.choices`` call per list: the load generator shares the service's
    cores, and a Python-level draw per candidate cost it more CPU than the service spent ranking them."""
    from_posted = count // 2 if posted else 0
    return random.choices(known, k=count - from_posted) + (random.choices(posted, k=from_posted) if from_posted else [])


class StatusClient(AsyncClient):
    """``AsyncClient`` whose every method answers the HTTP status (0: no answer) instead of the typed body, without
    retries: a 429 or 503 is a sample like any other."""

    def __init__(self, base_url: str, **options):
        super().__init__(base_url, retry=Retry(attempts=1), **options)

    async def _send(self, call: Call) -> int:
        try:
            return (await self.http.request(call.method, call.path, **request_args(call))).status_code
        except httpx.TransportError:
            return 0


@dataclass
class Scenarios:
    payloads: Payloads
    candidates: int = 1000
    recommend_k: int = 20
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    _counter: itertools.count = field(default_factory=itertools.count)
    ingested: list[str] = field(default_factory=list)

    async def ingest(self, client: StatusClient) -> int:
        n = next(self._counter)
        movie, text, poster = self.payloads.items[n % len(self.payloads.items)]
        item_id = f"lt-{self.run_id}-{n}-{movie}"
        status = await client.post_item(item_id, text=text, image=poster)
        if status == 200:
            self.ingested.append(item_id)
        return status

    known_items: list[str] = field(default_factory=list)
    known_users: list[str] = field(default_factory=list)

    async def discover(self, client: StatusClient, probes: int = 200) -> None:
        """Untimed: keep the dataset's users and items that this model package knows, so reads never 404 by design.
        Once per ``Scenarios``: later loads with the same object reuse what was found."""
        if self.known_items and self.known_users:
            return
        self.known_items = [m for m, _, _ in self.payloads.items[:probes] if await client.embedding(m) == 200]
        self.known_users = [u for u in self.payloads.users[:probes] if await client.recommend(user_id=u, k=1) == 200]
        if not self.known_items or not self.known_users:
            raise RuntimeError(
                "the service knows none of the dataset's items or users: wrong --data for this model package?"
            )

    async def get(self, client: StatusClient) -> int:
        return await client.embedding(pick_one(self.known_items, self.ingested))

    async def rank(self, client: StatusClient) -> int:
        return await client.rank(
            draw_candidates(self.known_items, self.ingested, self.candidates), user_id=random.choice(self.known_users)
        )

    async def recommend(self, client: StatusClient) -> int:
        """POST /v1/recommendations with the default filters (the user's training items left out)."""
        return await client.recommend(user_id=random.choice(self.known_users), k=self.recommend_k)

    async def recommend_filtered(self, client: StatusClient) -> int:
        """As ``recommend``, also leaving out 100 IDs the client shows."""
        return await client.recommend(
            user_id=random.choice(self.known_users),
            k=self.recommend_k,
            exclude_ids=draw_candidates(self.known_items, self.ingested, 100),
        )

    bundles: BundlePayloads | None = None
    known_bundles: list[str] = field(default_factory=list)
    bundle_users: list[str] = field(default_factory=list)
    posted_bundles: list[str] = field(default_factory=list)

    async def discover_bundles(self, client: StatusClient, probes: int = 200) -> None:
        """Untimed, like ``discover``: the Youshu bundles and users the served bundle recommender knows."""
        if self.known_bundles and self.bundle_users:
            return
        if self.bundles is None:
            raise RuntimeError("bundle scenarios need Youshu payloads (--bundles-data)")
        self.known_bundles = [b for b, _ in self.bundles.bundles[:probes] if await client.bundle_embedding(b) == 200]
        self.bundle_users = [
            u for u in self.bundles.users[:probes] if await client.recommend_bundles(user_id=u, k=1) == 200
        ]
        if not self.known_bundles or not self.bundle_users:
            raise RuntimeError("the service serves none of Youshu's bundles or users: no bundle recommender loaded?")

    async def bundle_ingest(self, client: StatusClient) -> int:
        n = next(self._counter)
        b, members = self.bundles.bundles[n % len(self.bundles.bundles)]
        bundle_id = f"lt-{self.run_id}-{n}-b{b}"
        status = await client.post_bundle(bundle_id, members)
        if status == 200:
            self.posted_bundles.append(bundle_id)
        return status

    async def bundle_get(self, client: StatusClient) -> int:
        return await client.bundle_embedding(pick_one(self.known_bundles, self.posted_bundles))

    async def bundle_rank(self, client: StatusClient) -> int:
        return await client.rank_bundles(
            draw_candidates(self.known_bundles, self.posted_bundles, self.candidates),
            user_id=random.choice(self.bundle_users),
        )

    async def bundle_recommend(self, client: StatusClient) -> int:
        return await client.recommend_bundles(user_id=random.choice(self.bundle_users), k=20)

    def pick(self, scenario: str) -> str:
        if scenario != "mix":
            return scenario
        return random.choices([s for s, _ in MIX], weights=[w for _, w in MIX])[0]


async def run_load(
    url: str,
    scenario: str,
    scenarios: Scenarios,
    requests: int,
    duration: float,
    concurrency: int = 8,
    rate: float | None = None,
    api_key: str | None = None,
) -> list[Sample]:
    require_loopback(url)
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}; choose from {SCENARIOS}")
    samples: list[Sample] = []
    issued = itertools.count()
    limits = httpx.Limits(max_connections=max(concurrency, 64))

    async def one(client: StatusClient) -> None:
        name = scenarios.pick(scenario)
        start = time.perf_counter()
        try:
            status = await getattr(scenarios, name)(client)
        except httpx.HTTPError:
            status = 0
        samples.append(Sample(name, start - t0, time.perf_counter() - start, status))

    async with StatusClient(url, api_key=api_key, timeout=30, limits=limits) as c:
        if scenario in BUNDLE_SCENARIOS:
            await scenarios.discover_bundles(c)
        else:
            await scenarios.discover(c)
        # The generator's own full garbage collections walked every object its libraries had made and
        # paused it, a few times a run: each made a cluster of slow samples that set the p99
        # (bench/results/design_measurements.md).
        # Frozen, those objects are skipped; only what the run itself allocates is collected.
        gc.collect()
        gc.freeze()
        t0 = time.perf_counter()
        deadline = t0 + duration
        try:
            if rate:
                in_flight: set[asyncio.Task] = set()
                for n in range(requests):
                    at = t0 + n / rate
                    if at >= deadline:
                        break
                    await asyncio.sleep(max(0.0, at - time.perf_counter()))
                    task = asyncio.create_task(one(c))
                    in_flight.add(task)
                    task.add_done_callback(in_flight.discard)
                await asyncio.gather(*in_flight)
            else:

                async def worker() -> None:
                    while time.perf_counter() < deadline and next(issued) < requests:
                        await one(c)

                await asyncio.gather(*(worker() for _ in range(concurrency)))
        finally:
            gc.unfreeze()
    return samples


def summarise(samples: list[Sample], wall: float) -> dict:
    """Throughput, latency percentiles (ms) and errors by status, overall and per scenario."""

    def block(ss: list[Sample]) -> dict:
        lat = np.array([s.latency for s in ss]) * 1000 if ss else np.zeros(1)
        statuses = Counter(s.status for s in ss)
        return {
            "requests": len(ss),
            "throughput_rps": len(ss) / wall if wall > 0 else 0.0,
            "latency_ms": {p: float(np.percentile(lat, q)) for p, q in (("p50", 50), ("p95", 95), ("p99", 99))}
            | {"max": float(lat.max()), "mean": float(lat.mean())},
            "status": {str(k): v for k, v in sorted(statuses.items())},
            "errors": sum(v for k, v in statuses.items() if k == 0 or k >= 400),
        }

    by = {name: block([s for s in samples if s.scenario == name]) for name in sorted({s.scenario for s in samples})}
    return {"wall_s": wall, "overall": block(samples), "by_scenario": by}


def write_report(samples: list[Sample], summary: dict, out: Path, title: str) -> tuple[Path, Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    json_path, png_path = out / "loadtest.json", out / "loadtest.png"
    json_path.write_text(json.dumps({"title": title, **summary}, indent=2))
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    for name in sorted({s.scenario for s in samples}):
        ss = [s for s in samples if s.scenario == name]
        a.scatter([s.start for s in ss], [s.latency * 1000 for s in ss], s=4, label=name, alpha=0.6)
        b.hist([s.latency * 1000 for s in ss], bins=50, alpha=0.6, label=name)
    a.set(xlabel="time since start (s)", ylabel="latency (ms)", yscale="log", title="latency over time")
    b.set(xlabel="latency (ms)", ylabel="requests", title="latency distribution")
    a.legend(), b.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(png_path, dpi=110)
    plt.close(fig)
    return json_path, png_path
