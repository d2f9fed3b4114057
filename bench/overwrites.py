"""Overwrites at catalogue scale (issue 39): what an item overwrite costs a replica's index, and what recommending
costs after many of them.

Each overwrite (a re-POST with overwrite, every ``/interactions`` re-gate, a synced ID vector) reaches every
replica's index through the event stream and is applied on its event loop. For each index kind (``--indexes``),
``--items`` synthetic vectors (a Gaussian fitted to the package's warm items, as in ``bench/scale.py``) are indexed
(HNSW: its graph built, as a replica does after start-up), then ``--overwrites`` random items are overwritten one at a
time, timing each; then ``--queries`` recommendations (top ``--k`` for the package's users) are timed, and compared
with the exact top k for recall. HNSW's stale nodes, and its background compactions, are reported.

    python bench/overwrites.py --package artifacts/package [--items 1000000] [--overwrites 100000]

Writes bench/results/overwrites.{json,md}. A measurement, run by hand.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_dir import RESULTS
from scale import synthetic  # noqa: E402

from coldproxy.config import REPO_ROOT, usable_cores  # noqa: E402
from coldproxy.package import load_package  # noqa: E402
from service.storage.index import ItemIndex  # noqa: E402


def ms(values: list[float], q: float) -> float:
    return round(1000 * float(np.quantile(values, q)), 3)


def run(kind: str, package, n: int, overwrites: int, queries: int, k: int, seed: int) -> dict:
    index = ItemIndex(package.item_emb.shape[1], kind=kind)
    t = time.perf_counter()
    for start, vecs in synthetic(package, n, seed):
        index.upsert([f"syn-{start + j}" for j in range(len(vecs))], vecs)
    built = {"index_s": round(time.perf_counter() - t, 1)}
    if kind == "hnsw":
        built["graph_s"] = round(index.build_ann(usable_cores()), 1)
    rng = np.random.default_rng(seed + 1)
    fresh = next(synthetic(package, overwrites, seed + 2))[1]
    targets = rng.integers(0, n, overwrites)
    times, rebuilds = [], 0
    for j in tqdm(range(overwrites), desc=f"{kind}: overwrites", unit="item", mininterval=2):
        before = index._ann
        t = time.perf_counter()
        index.upsert([f"syn-{targets[j]}"], fresh[j : j + 1])
        times.append(time.perf_counter() - t)
        rebuilds += before is not None and index._ann is not before
    users = package.user_emb[rng.integers(0, len(package.user_emb), queries)]
    search = []
    exact = ItemIndex(package.item_emb.shape[1]) if kind == "hnsw" else None
    for q in users:
        t = time.perf_counter()
        hits = index.search(q, k)
        search.append(time.perf_counter() - t)
        assert len(hits) == k
    recall = None
    if exact is not None:  # the same rows, searched exactly
        with index._lock:
            rows = index._rows()[: len(index)].copy()
        exact.upsert(index.ids(), rows)
        recall = round(
            float(
                np.mean(
                    [
                        len({i for i, _ in index.search(q, k)} & {i for i, _ in exact.search(q, k)}) / k
                        for q in users[:200]
                    ]
                )
            ),
            4,
        )
    return {
        "index": kind,
        "items": n,
        "overwrites": overwrites,
        **built,
        "overwrite_p50_ms": ms(times, 0.5),
        "overwrite_p99_ms": ms(times, 0.99),
        "overwrite_max_ms": ms(times, 1.0),
        "recommend_k": k,
        "recommend_p50_ms": ms(search, 0.5),
        "recommend_p99_ms": ms(search, 0.99),
        "stale_nodes_after": index.stale if kind == "hnsw" else None,
        "graph_nodes_after": index._ann.ntotal if kind == "hnsw" else None,
        "graph_rebuilds_seen": rebuilds if kind == "hnsw" else None,
        "recall_at_k_vs_exact": recall,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--package", type=Path, default=REPO_ROOT / "artifacts" / "package")
    ap.add_argument("--items", type=int, default=1_000_000)
    ap.add_argument("--overwrites", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--k", type=int, default=100)
    ap.add_argument("--indexes", default="flat,hnsw")
    ap.add_argument("--name", default="overwrites")
    a = ap.parse_args()
    package = load_package(a.package)
    rows = [run(kind, package, a.items, a.overwrites, a.queries, a.k, 0) for kind in a.indexes.split(",")]
    RESULTS.mkdir(exist_ok=True)
    command = " ".join(["python bench/overwrites.py", *sys.argv[1:]])
    (RESULTS / f"{a.name}.json").write_text(json.dumps({"command": command, "rows": rows}, indent=2))
    lines = [
        f"# Overwrites at {a.items:,} items: one replica's index, this machine ({usable_cores()} cores)\n",
        f"Command: `{command}`. Each of {a.overwrites:,} overwrites applied one at a time, as the event stream "
        f"delivers them; then {a.queries:,} recommendations (top {a.k}) for the package's users.\n",
        "| index | overwrite p50 / p99 / max (ms) | recommend p50 / p99 (ms) after | HNSW stale nodes after | "
        "graph "
        "rebuilds | recall@k vs exact |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['index']} | {r['overwrite_p50_ms']} / {r['overwrite_p99_ms']} / {r['overwrite_max_ms']} | "
            f"{r['recommend_p50_ms']} / {r['recommend_p99_ms']} | {r['stale_nodes_after'] or ''} | "
            f"{r['graph_rebuilds_seen'] if r['graph_rebuilds_seen'] is not None else ''} | "
            f"{r['recall_at_k_vs_exact'] or ''} |"
        )
    (RESULTS / f"{a.name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
