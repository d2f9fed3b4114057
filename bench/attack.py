"""Hostile-client script (issues 17 and 39): starts ``coldproxy serve`` on a model package and real Redis -- as a
fresh clone runs it: loopback, no API keys -- then sends what an attacker would -- oversized and lying
Content-Lengths, chunked bodies past every limit, multipart with thousands of parts or one huge part, deeply nested
JSON, random bytes to every route of the OpenAPI schema, image bombs, slow clients holding connections open, and
(issue 39) the reads an anonymous client may send: maximal valid candidate lists, lists far past the limit, batches
of 131,000 tiny items, 1 MiB headers, 16 KiB URLs, 10,000 unknown IDs, cross-site form posts and DNS-rebound Hosts,
eight at a time while another process times ``GET /healthz`` -- and reports, per attack, the statuses seen, the 5xx
count (the goal is 0), ``/healthz`` latency under the hostile reads (goal: p99 < 50 ms), whether the server stayed
up, and its resident memory before, at its peak and after (the goal: growth under a bound).

    python bench/attack.py --package-dir artifacts/package [--rounds 3] [--slow-clients 200]

Writes bench/results/attack.{json,md}. Run by hand: it is a measurement, not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
from attack_bodies import KEY, Tally, attacks
from attack_stalls import (
    ROUTE_MAX,
    filtered_at_scale,
    free_port,
    huge_header,
    idle_sockets,
    probed,
    quadratic,
    rss_mb,
    two_promotes,
    unknown_histories,
)
from results_dir import RESULTS


def hostile_reads(port: int, tally: Tally, warm_ids: list[str], rounds: int, concurrency: int = 8) -> dict:
    """Issue 39's attacks, ``concurrency`` at a time, while a second process times /healthz; its latencies."""
    json_head = {"content-type": "application/json"}
    long_ids = [f"{n:0128d}" for n in range(10_000)]  # valid IDs of the longest length, unknown to the service
    bodies = {
        "rank: 10,000 valid 128-character IDs (maximal, unknown)": (
            "POST",
            "/v1/rank",
            json.dumps({"user_id": "1", "item_ids": long_ids}).encode(),
            json_head,
        ),
        "rank: 10,000 known IDs (maximal)": (
            "POST",
            "/v1/rank",
            json.dumps(
                {"user_id": "1", "item_ids": (warm_ids * (10_000 // max(1, len(warm_ids)) + 1))[:10_000]}
            ).encode(),
            json_head,
        ),
        "rank: 10,000 unknown short IDs": (
            "POST",
            "/v1/rank",
            json.dumps({"user_id": "1", "item_ids": [f"u{n}" for n in range(10_000)]}).encode(),
            json_head,
        ),
        "rank: 1.5M IDs (5.7 MB)": (
            "POST",
            "/v1/rank",
            json.dumps({"user_id": "1", "item_ids": [str(n % 10) for n in range(1_500_000)]}).encode(),
            json_head,
        ),
        "bundles/rank: 1.5M IDs": (
            "POST",
            "/v1/bundles/rank",
            json.dumps({"user_id": "1", "bundle_ids": [str(n % 10) for n in range(1_500_000)]}).encode(),
            json_head,
        ),
        "items:batch: 131,000 tiny items (4.4 MB)": (
            "POST",
            "/v1/items:batch",
            json.dumps({"items": [{"item_id": f"t{n}", "text": "x"} for n in range(131_000)]}).encode(),
            json_head,
        ),
        "recommendations: vector of 1M values": (
            "POST",
            "/v1/recommendations",
            json.dumps({"user_embedding": [0.0] * 1_000_000, "k": 10}).encode(),
            json_head,
        ),
        "GET with a 1 MiB header": ("GET", "/healthz", b"", {"x-pad": "a" * (1 << 20)}),
        "GET with a 16 KiB URL": ("GET", "/v1/items/" + "a" * 16_384 + "/embedding", b"", {}),
        "cross-site form post (Origin: evil.example)": (
            "POST",
            "/v1/items",
            b"item_id=csrf&text=hello",
            {"content-type": "application/x-www-form-urlencoded", "origin": "http://evil.example"},
        ),
        "DNS-rebound Host": (
            "POST",
            "/v1/items",
            b"item_id=rebound&text=hello",
            {"content-type": "application/x-www-form-urlencoded", "host": "rebound.evil.example"},
        ),
    }

    async def run() -> None:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as c:
            sem = asyncio.Semaphore(concurrency)

            async def one(name, method, path, body, headers):
                async with sem:
                    try:
                        r = await c.request(method, path, content=body, headers=headers)
                        tally.add(name, r.status_code)
                    except httpx.HTTPError as exc:
                        tally.add(name, exc.__class__.__name__)

            for _ in range(rounds):
                await asyncio.gather(*(one(name, *spec) for name, spec in bodies.items() for _ in range(concurrency)))

    return probed(port, lambda: asyncio.run(run()))[1]


def stall_attacks(
    port: int, pid: int, tally: Tally, candidate: bool, idle_hold_s: float = 30.0, history_posts: int = 5000
) -> dict:
    """Issue 59's attacks (``bench/attack_stalls.py``), one at a time, each with ``/healthz`` timed beside it and
    the server's RSS after it."""
    plan = {
        "quadratic-counter body, 31 KB": lambda: quadratic(port, 31_000),
        "quadratic-counter body, 300 KB": lambda: quadratic(port, 300_000),
        f"quadratic-counter body, route maximum ({ROUTE_MAX / 1e6:.1f} MB)": lambda: quadratic(port, ROUTE_MAX),
        f"520 idle sockets held {idle_hold_s:g} s": lambda: idle_sockets(port, hold_s=idle_hold_s),
        "32 MiB unterminated header": lambda: huge_header(port),
        f"{history_posts:,} history posts for unknown users": lambda: unknown_histories(port, history_posts),
    }
    if candidate:
        plan["two concurrent promotes"] = lambda: two_promotes(port)
    out = {}
    for name, attack in plan.items():
        result, health = probed(port, attack)
        for status, n in (result.get("statuses") or result.get("ended_as") or {}).items():
            for _ in range(n):
                tally.add(name, status)
        out[name] = result | {"healthz": health, "rss_mb_after": round(rss_mb(pid), 1)}
        print(f"{name}: {json.dumps(out[name])}", flush=True)
    return out


class PeakRss:
    """The server's resident memory, sampled every 50 ms on a thread: its peak."""

    def __init__(self, pid: int):
        import threading

        self.pid, self.peak, self._stop = pid, 0.0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak = max(self.peak, rss_mb(self.pid))
            except OSError:
                return
            time.sleep(0.05)

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return self.peak


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--package-dir", type=Path, default=Path("artifacts/package"))
    p.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--slow-clients", type=int, default=200)
    p.add_argument("--out", default="attack")
    p.add_argument(
        "--candidate-package-dir",
        type=Path,
        help="a package with the same encoders, run in shadow: enables the two-concurrent-promotes attack",
    )
    p.add_argument(
        "--filtered-items",
        type=int,
        default=1_000_000,
        help="synthetic items of the second replica the filtered recommendations run against (0: skip that attack)",
    )
    p.add_argument("--idle-hold-s", type=float, default=30.0, help="how long the 520 idle sockets are held")
    p.add_argument("--history-posts", type=int, default=5000, help="history posts for unknown users")
    p.add_argument(
        "--with-keys",
        action="store_true",
        help="configure a write key the attacker holds (default: none, the keyless loopback demo a fresh clone runs)",
    )
    a = p.parse_args()
    port, prefix = free_port(), f"attack-{uuid.uuid4().hex[:8]}"
    env = os.environ | {
        "COLDPROXY_PACKAGE_DIR": str(a.package_dir),
        "COLDPROXY_REDIS_URL": a.redis_url,
        "COLDPROXY_REDIS_PREFIX": prefix,
        "COLDPROXY_PORT": str(port),
        "COLDPROXY_HOST": "127.0.0.1",
    }
    if a.candidate_package_dir is not None:
        env |= {"COLDPROXY_CANDIDATE_PACKAGE_DIR": str(a.candidate_package_dir)}
    if a.with_keys:  # the attacker holds a write key (no admin key); without: the keyless loopback demo
        env |= {"COLDPROXY_API_KEYS": json.dumps([KEY]), "COLDPROXY_ADMIN_API_KEYS": json.dumps([uuid.uuid4().hex])}
    from coldproxy.package import load_package

    warm_ids = load_package(a.package_dir).item_ids
    server = subprocess.Popen([sys.executable, "-m", "coldproxy_cli.commands", "serve"], env=env)
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        else:
            raise SystemExit("the server did not become ready")
        before, peak = rss_mb(server.pid), PeakRss(server.pid)
        tally, t = Tally(), time.time()
        healthz = hostile_reads(port, tally, warm_ids, a.rounds)
        per_attack = stall_attacks(
            port, server.pid, tally, a.candidate_package_dir is not None, a.idle_hold_s, a.history_posts
        )
        asyncio.run(attacks(port, tally, a.rounds, a.slow_clients, random.Random(0)))
        after, alive, peak = rss_mb(server.pid), server.poll() is None, peak.stop()
        ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code if alive else None
    finally:
        server.terminate()
        server.wait(timeout=60)
    if a.filtered_items:
        per_attack |= filtered_at_scale(a.package_dir, a.redis_url, a.filtered_items, tally)
    rows = {k: dict(v) for k, v in tally.by_attack.items()}
    tried = sum(sum(v.values()) for v in rows.values())
    five = sum(n for v in rows.values() for s, n in v.items() if s.isdigit() and int(s) >= 500)
    out = {
        "requests": tried,
        "5xx": five,
        "server_alive": alive,
        "readyz_after": ready,
        "rss_mb_before": before,
        "rss_mb_peak": peak,
        "rss_mb_after": after,
        "healthz_during_hostile_reads": healthz,
        "per_attack": per_attack,
        "seconds": time.time() - t,
        "with_keys": a.with_keys,
        "by_attack": rows,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{a.out}.json").write_text(json.dumps(out, indent=2))
    lines = [
        "# Hostile clients against one replica (`python bench/attack.py`)\n",
        f"{tried} requests, **{five} answered 5xx**; server alive after: {alive}, /readyz {ready}; "
        f"RSS {before:.0f} MB before, {peak:.0f} MB at its peak, {after:.0f} MB after. "
        f"`/healthz` while the hostile reads ran (8 at a time, another process timing it every 20 ms): "
        f"p50 {healthz['p50_ms']} ms, p99 {healthz['p99_ms']} ms, max {healthz['max_ms']} ms "
        f"({healthz['samples']} samples). API keys: "
        f"{'a write key held by the attacker' if a.with_keys else 'none (the loopback demo)'}.\n",
        "| attack | statuses seen (count) |",
        "|---|---|",
    ]
    lines += [f"| {k} | " + ", ".join(f"{s}: {n}" for s, n in sorted(v.items())) + " |" for k, v in rows.items()]
    lines += [
        "",
        "Issue 59's attacks, one at a time, `/healthz` timed from another process during each:",
        "",
        "| attack | /healthz p50 / p99 / max (ms) | /healthz not 200 | what the attack saw |",
        "|---|---|---|---|",
    ]
    for k, v in per_attack.items():
        h = v["healthz"]
        seen = {x: y for x, y in v.items() if x not in ("healthz",)}
        lines.append(
            f"| {k} | {h.get('p50_ms')} / {h.get('p99_ms')} / {h.get('max_ms')} | {h['not_200']} | {json.dumps(seen)} |"
        )
    (RESULTS / f"{a.out}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
