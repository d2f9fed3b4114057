"""What a change's defences cost the requests users send (issue 59): two commits' services on one machine, one model
package, one Redis (each its own prefix), the same load generator alternating between them round by round --
ingestion (POST /v1/items with poster and text, closed loop at ``--concurrency``), GET of an item's vector and
POST /v1/rank of 1,000 candidates (each closed loop at ``--concurrency``) -- so drift of the machine falls on both.
Per round and scenario: throughput and p50 / p99; the report gives the after / before ratio of the means.

    python bench/defence_overhead.py --before 827d521 --after HEAD [--rounds 3] [--package artifacts/package]

Each commit is checked out into a temporary git worktree and served from there (``python -m coldproxy_cli.commands
serve`` with the worktree first on the path); this checkout's virtualenv runs both. Writes
bench/results/defence_overhead.{json,md}. A measurement, run by hand.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_dir import RESULTS  # noqa: E402

from coldproxy.config import DEFAULT_DATASETS, REPO_ROOT  # noqa: E402
from loadtest.payloads import Payloads  # noqa: E402
from loadtest.runner import Scenarios, run_load, summarise  # noqa: E402

SCENARIOS = ("ingest", "get", "rank")


def serve(tree: Path, package: Path, port: int, prefix: str) -> subprocess.Popen:
    env = os.environ | {
        "COLDPROXY_PACKAGE_DIR": str(package),
        "COLDPROXY_REDIS_PREFIX": prefix,
        "COLDPROXY_PORT": str(port),
        "COLDPROXY_HOST": "127.0.0.1",
        "COLDPROXY_BUNDLES_PACKAGE_DIR": "",
        "PYTHONPATH": str(tree),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "coldproxy_cli.commands", "serve"],
        cwd=tree,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 300
    while time.time() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.5)
        if proc.poll() is not None:
            raise RuntimeError(f"the service of {tree} exited during start-up")
    proc.kill()
    raise RuntimeError(f"the service of {tree} did not become ready")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--before", required=True, help="the commit before the change")
    p.add_argument("--after", default="HEAD")
    p.add_argument("--package", type=Path, default=REPO_ROOT / "artifacts" / "package")
    p.add_argument("--data", type=Path, default=Path(DEFAULT_DATASETS) / "movielens-posters")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--ingest-items", type=int, default=400)
    p.add_argument("--read-seconds", type=float, default=10.0)
    p.add_argument("--name", default="defence_overhead")
    a = p.parse_args()
    for side in ("before", "after"):  # named by commit in the report, whatever ref was given
        ref = getattr(a, side)
        sha = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "rev-parse", "--short", ref], check=True, capture_output=True, text=True
        ).stdout.strip()
        setattr(a, side, sha if sha.startswith(ref) else f"{sha} ({ref})")
    payloads = Payloads.from_movielens(a.data)
    trees, servers, rows = {}, {}, []
    tmp = Path(tempfile.mkdtemp(prefix="coldproxy-overhead-"))
    try:
        for side, ref in (("before", a.before), ("after", a.after)):
            trees[side] = tmp / side
            subprocess.run(
                ["git", "-C", str(REPO_ROOT), "worktree", "add", "--detach", str(trees[side]), ref.split()[0]],
                check=True,
                capture_output=True,
            )
            port = 8600 + len(servers)
            servers[side] = (
                serve(trees[side], a.package.resolve(), port, f"overhead-{uuid.uuid4().hex[:8]}"),
                f"http://127.0.0.1:{port}",
            )
        scenarios = {side: Scenarios(payloads) for side in servers}
        for n in range(a.rounds):
            for side in ("before", "after") if n % 2 == 0 else ("after", "before"):
                url = servers[side][1]
                for scenario in SCENARIOS:
                    requests = a.ingest_items if scenario == "ingest" else 10**9
                    duration = 600.0 if scenario == "ingest" else a.read_seconds
                    t = time.perf_counter()
                    samples = asyncio.run(run_load(url, scenario, scenarios[side], requests, duration, a.concurrency))
                    s = summarise(samples, time.perf_counter() - t)["overall"]
                    lat = s["latency_ms"]
                    rows.append(
                        {
                            "round": n,
                            "side": side,
                            "scenario": scenario,
                            "errors": s["errors"],
                            "throughput_rps": round(s["throughput_rps"], 2),
                            "p50_ms": round(lat["p50"], 2),
                            "p99_ms": round(lat["p99"], 2),
                        }
                    )
                    print(json.dumps(rows[-1]), flush=True)
    finally:
        for proc, _ in servers.values():
            proc.terminate()
            proc.wait(timeout=60)
        for tree in trees.values():
            subprocess.run(
                ["git", "-C", str(REPO_ROOT), "worktree", "remove", "--force", str(tree)], capture_output=True
            )
    ratio = {}
    for scenario in SCENARIOS:
        mean = {
            side: float(np.mean([r["throughput_rps"] for r in rows if r["side"] == side and r["scenario"] == scenario]))
            for side in ("before", "after")
        }
        ratio[scenario] = round(mean["after"] / mean["before"], 3) if mean["before"] else None
    out = {
        "before": a.before,
        "after": a.after,
        "concurrency": a.concurrency,
        "cores": os.cpu_count(),
        "rows": rows,
        "throughput_after_over_before": ratio,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{a.name}.json").write_text(json.dumps(out, indent=2))
    lines = [
        f"# Defences' cost: {a.before} (before) against {a.after} (after)\n",
        f"`python bench/defence_overhead.py --before {a.before} --after {a.after}`: one package, one Redis, "
        f"closed loop at concurrency {a.concurrency}, rounds alternating between the two services.\n",
        "| round | side | scenario | requests/s | p50 (ms) | p99 (ms) | errors |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['round']} | {r['side']} | {r['scenario']} | {r['throughput_rps']} | {r['p50_ms']} | "
        f"{r['p99_ms']} | {r['errors']} |"
        for r in rows
    ]
    lines += ["", "Throughput after / before (mean over rounds): " + ", ".join(f"{k} {v}x" for k, v in ratio.items())]
    (RESULTS / f"{a.name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
