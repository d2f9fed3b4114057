"""``python -m loadtest``: bounded HTTP load against a local coldproxy, with a JSON + PNG report.

python -m loadtest --scenario mix --rate 200 --duration 60 --requests 20000
python -m loadtest --scenario ingest --concurrency 32 --requests 500
python -m loadtest --scenario bundle_ingest --concurrency 8 --requests 500   # needs a bundle recommender
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path

from coldproxy.config import DEFAULT_DATASETS
from loadtest.payloads import BundlePayloads, Payloads
from loadtest.runner import BUNDLE_SCENARIOS, SCENARIOS, Scenarios, run_load, summarise, write_report


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(
        prog="python -m loadtest", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--url", default="http://127.0.0.1:8000", help="service base URL (loopback only)")
    p.add_argument("--scenario", choices=SCENARIOS, default="mix")
    p.add_argument("--requests", type=int, default=1000, help="stop after this many requests")
    p.add_argument("--duration", type=float, default=60.0, help="stop after this many seconds")
    p.add_argument("--concurrency", type=int, default=8, help="closed-loop workers (when no --rate)")
    p.add_argument("--rate", type=float, default=None, help="open-loop arrivals per second")
    p.add_argument("--candidates", type=int, default=1000, help="candidates per rank request")
    p.add_argument("--data", type=Path, default=DEFAULT_DATASETS / "movielens-posters")
    p.add_argument(
        "--bundles-data", type=Path, default=DEFAULT_DATASETS / "youshu", help="Youshu, for the bundle_* scenarios"
    )
    p.add_argument("--api-key", default=None)
    p.add_argument("--out", type=Path, default=Path("loadtest/results"))
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    import random

    random.seed(a.seed)
    bundles = BundlePayloads.from_youshu(a.bundles_data, a.seed) if a.scenario in BUNDLE_SCENARIOS else None
    scenarios = Scenarios(Payloads.from_movielens(a.data, a.seed), candidates=a.candidates, bundles=bundles)
    t = time.perf_counter()
    samples = asyncio.run(
        run_load(a.url, a.scenario, scenarios, a.requests, a.duration, a.concurrency, a.rate, a.api_key)
    )
    summary = summarise(samples, time.perf_counter() - t)
    mode = f"rate {a.rate}/s" if a.rate else f"concurrency {a.concurrency}"
    summary["config"] = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(a).items() if k != "api_key"}
    json_path, png_path = write_report(samples, summary, a.out, f"{a.scenario}, {mode}")
    print(json.dumps({k: summary[k] for k in ("wall_s", "overall", "by_scenario")}, indent=2))
    print(f"wrote {json_path} and {png_path}")
    return summary


if __name__ == "__main__":
    main()
