"""Catalogue-size benchmark (issue 19): what a replica costs as the number of new items grows.

For each size N (``--sizes``), N synthetic new items are drawn in the package's ID space from the warm
items' distribution (a Gaussian with their mean and covariance) and written into Redis with the store's
own key layout (a private prefix). Then, for each index kind (``--indexes``: flat, hnsw), ``coldproxy
serve`` is started on them as its own process and measured: replica start (process start to ready: package
load + index rebuild from Redis), its RSS, GET recommendations (k = 100, the user's training interactions left out
as by default), POST /v1/recommendations with 100 ``exclude_ids`` besides (what a client already shows), and POST
/v1/rank (1,000 candidates, half of them synthetic new items) latency at a fixed open-loop rate, and -- comparing the
HNSW replica's top 100 with the flat one's for the same users -- ANN recall@100. Redis memory is read
from INFO before and after the writes.

Prints and writes bench/results/<name>.{json,md,png} (``--name``, default ``scale``).

    python bench/scale.py --package artifacts/package [--sizes 10000,100000,1000000] [--rate 50]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import numpy as np
import redis

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serving import RESULTS, rss_mb, start_server  # noqa: E402

from coldproxy.config import DEFAULT_DATASETS, REPO_ROOT, ServiceSettings  # noqa: E402
from coldproxy.package import load_package  # noqa: E402
from loadtest.payloads import Payloads  # noqa: E402
from loadtest.runner import Scenarios, run_load, summarise  # noqa: E402


def synthetic(package, n: int, seed: int = 0, chunk: int = 100_000):
    """``n`` vectors from a Gaussian fitted to the warm items' ID embeddings, in chunks."""
    warm = package.item_emb.astype(np.float64)
    mean, cov = warm.mean(0), np.cov(warm, rowvar=False)
    rng = np.random.default_rng(seed)
    for start in range(0, n, chunk):
        yield start, rng.multivariate_normal(mean, cov, size=min(chunk, n - start)).astype(np.float32)


def write_items(r: redis.Redis, prefix: str, package, n: int) -> float:
    base = f"{prefix}:{package.manifest.version}"
    t = time.perf_counter()
    for start, vecs in synthetic(package, n):
        for s in range(0, len(vecs), 10_000):
            pipe = r.pipeline(transaction=False)
            ids = [f"syn-{start + s + k}" for k in range(min(10_000, len(vecs) - s))]
            for i, v in zip(ids, vecs[s : s + 10_000]):
                pipe.hset(f"{base}:item:{i}", mapping={"emb": v.tobytes(), "modalities": "text"})
            pipe.sadd(f"{base}:items", *ids)
            pipe.execute()
    return time.perf_counter() - t


def drop(r: redis.Redis, prefix: str) -> None:
    batch = []
    for key in r.scan_iter(f"{prefix}:*", count=10_000):
        batch.append(key)
        if len(batch) >= 10_000:
            r.unlink(*batch)
            batch = []
    if batch:
        r.unlink(*batch)


def load(url: str, scenario: str, scenarios: Scenarios, rate: float, duration: float) -> dict:
    t = time.perf_counter()
    samples = asyncio.run(run_load(url, scenario, scenarios, int(rate * duration) + 1, duration, rate=rate))
    return summarise(samples, time.perf_counter() - t)["overall"]


def top_k(url: str, users: list[str], k: int) -> dict[str, list[str]]:
    with httpx.Client(base_url=url, timeout=60) as c:
        return {
            u: [i["item_id"] for i in c.get(f"/v1/users/{u}/recommendations", params={"k": k}).json()["items"]]
            for u in users
        }


def real_recall(package, k: int = 100) -> dict:
    """Recall@k of the HNSW index against the flat one on the package's own items (its warm items' ID
    embeddings), every user of the package a query: the real catalogue, not a synthetic one."""
    from service.storage.index import ItemIndex

    flat, hnsw = ItemIndex(package.item_emb.shape[1]), ItemIndex(package.item_emb.shape[1], kind="hnsw")
    for index in (flat, hnsw):
        index.upsert(package.item_ids, package.item_emb)
    hnsw.build_ann(os.cpu_count() or 1)
    recall = [len({i for i, _ in hnsw.search(u, k)} & {i for i, _ in flat.search(u, k)}) / k for u in package.user_emb]
    return {
        "items": len(package.item_ids),
        "queries": len(package.user_emb),
        "recall_at_100": round(float(np.mean(recall)), 4),
    }


def plot(rows: list[dict], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    measures = (
        ("start_s", "replica start (s)"),
        ("rss_mb", "replica RSS (MB)"),
        ("recommend_p99_ms", "recommend k=100 p99 (ms)"),
        ("filtered_p99_ms", "+ 100 exclude_ids p99 (ms)"),
        ("rank_p99_ms", "rank 1,000 p99 (ms)"),
    )
    fig, axes = plt.subplots(1, len(measures) + 1, figsize=(4 * (len(measures) + 1), 3.6))
    for ax, (key, label) in zip(axes, measures):
        for kind in sorted({r["index"] for r in rows}):
            pts = [(r["items"], r[key]) for r in rows if r["index"] == kind]
            ax.loglog(*zip(*pts), "o-", label=kind)
        ax.set_xlabel("new items")
        ax.set_title(label, fontsize=9)
        ax.legend(fontsize=8)
    redis_pts = sorted({(r["items"], r["redis_mb"]) for r in rows})
    axes[-1].loglog(*zip(*redis_pts), "o-")
    axes[-1].set_title("Redis memory (MB)", fontsize=9)
    axes[-1].set_xlabel("new items")
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--package", type=Path, default=REPO_ROOT / "artifacts" / "package")
    ap.add_argument("--data", type=Path, default=DEFAULT_DATASETS / "movielens-posters")
    ap.add_argument("--sizes", default="10000,100000,1000000")
    ap.add_argument("--indexes", default="flat,hnsw")
    ap.add_argument("--rate", type=float, default=50.0, help="requests/s of each timed load")
    ap.add_argument("--duration", type=float, default=15.0, help="seconds of each timed load")
    ap.add_argument("--recall-users", type=int, default=200)
    ap.add_argument("--name", default="scale")
    ap.add_argument("--real-only", action="store_true", help="only the recall on the package's own items")
    args = ap.parse_args()

    package = load_package(args.package)
    real = real_recall(package)
    print(
        f"HNSW recall@100 on the package's own {real['items']} items, {real['queries']} users: {real['recall_at_100']}"
    )
    if args.real_only:
        (RESULTS / f"{args.name}-real.json").write_text(json.dumps(real, indent=2))
        return
    payloads = Payloads.from_movielens(args.data)
    r = redis.Redis.from_url(ServiceSettings().redis_url)
    os.environ |= {"COLDPROXY_BUNDLES_PACKAGE_DIR": "", "COLDPROXY_KEEP_FEATURES": "off"}
    rows = []
    for n in [int(x) for x in args.sizes.split(",")]:
        prefix = f"coldproxy-bench-scale-{uuid.uuid4().hex[:8]}"
        before = r.info("memory")["used_memory"]
        write_s = write_items(r, prefix, package, n)
        redis_mb = (r.info("memory")["used_memory"] - before) / 2**20
        print(f"{n} items written in {write_s:.1f} s, Redis +{redis_mb:.0f} MB")
        flat_top = None
        try:
            for kind in args.indexes.split(","):
                os.environ["COLDPROXY_INDEX"] = kind
                port = 18000 + random.Random().randrange(1000)
                t = time.perf_counter()
                server = start_server(
                    port,
                    prefix,
                    args.package,
                    Path(tempfile.gettempdir()) / f"coldproxy-{args.name}-server.log",
                    timeout=900,
                )
                start_s = time.perf_counter() - t
                url = f"http://127.0.0.1:{port}"
                try:
                    ann_s = None
                    if kind == "hnsw":  # it serves exactly at once; the graph takes over once built
                        while 'coldproxy_index_ann_ready{catalog="items"} 1.0' not in httpx.get(url + "/metrics").text:
                            time.sleep(0.5)
                        ann_s = time.perf_counter() - t
                    scenarios = Scenarios(payloads, candidates=1000, recommend_k=100)
                    scenarios.ingested = [f"syn-{k}" for k in random.Random(0).sample(range(n), min(n, 5000))]
                    rec = load(url, "recommend", scenarios, args.rate, args.duration)
                    filtered = load(url, "recommend_filtered", scenarios, args.rate, args.duration)
                    rank = load(url, "rank", scenarios, args.rate, args.duration)
                    users = scenarios.known_users[: args.recall_users]
                    tops = top_k(url, users, 100)
                    rss = rss_mb(server.pid)
                finally:
                    server.terminate()
                    server.wait(60)
                recall = None
                if kind == "flat":
                    flat_top = tops
                elif flat_top is not None:
                    recall = float(np.mean([len(set(tops[u]) & set(flat_top[u])) / 100 for u in users]))
                row = {
                    "items": n,
                    "index": kind,
                    "start_s": round(start_s, 2),
                    "ann_ready_s": None if ann_s is None else round(ann_s, 1),
                    "rss_mb": round(rss, 1),
                    "redis_mb": round(redis_mb, 1),
                    "redis_write_s": round(write_s, 1),
                    "recommend_p50_ms": round(rec["latency_ms"]["p50"], 2),
                    "recommend_p99_ms": round(rec["latency_ms"]["p99"], 2),
                    "recommend_errors": rec["errors"],
                    "filtered_p50_ms": round(filtered["latency_ms"]["p50"], 2),
                    "filtered_p99_ms": round(filtered["latency_ms"]["p99"], 2),
                    "filtered_errors": filtered["errors"],
                    "rank_p50_ms": round(rank["latency_ms"]["p50"], 2),
                    "rank_p99_ms": round(rank["latency_ms"]["p99"], 2),
                    "rank_errors": rank["errors"],
                    "recall_at_100": None if recall is None else round(recall, 4),
                }
                rows.append(row)
                print(json.dumps(row))
        finally:
            drop(r, prefix)

    RESULTS.mkdir(exist_ok=True)
    hnsw = {k: v for k, v in ServiceSettings().index_options().items() if k.startswith("hnsw_")}  # COLDPROXY_HNSW_*
    out = {
        "package": str(args.package),
        "rate_rps": args.rate,
        "duration_s": args.duration,
        "cores": os.cpu_count(),
        "hnsw": hnsw,
        "real_catalogue": real,
        "rows": rows,
    }
    (RESULTS / f"{args.name}.json").write_text(json.dumps(out, indent=2))
    plot(rows, RESULTS / f"{args.name}.png")
    md = [
        f"# Catalogue size: one replica on this machine ({os.cpu_count()} cores)",
        "",
        f"Command: `python bench/scale.py --package {args.package} --sizes {args.sizes} --indexes {args.indexes} "
        f"--rate {args.rate:g} --duration {args.duration:g}`; loads open-loop at {args.rate:g} requests/s.",
        "",
        "Replica start: process start to ready (package loaded, every item indexed, exact search); HNSW graph: "
        "process start until the graph serves (built on a background thread); the loads ran after that. HNSW "
        f"settings: M {hnsw['hnsw_m']}, efConstruction {hnsw['hnsw_ef_construction']}, efSearch "
        f"{hnsw['hnsw_ef_search']} (`COLDPROXY_HNSW_M`, `COLDPROXY_HNSW_EF_CONSTRUCTION`, "
        "`COLDPROXY_HNSW_EF_SEARCH`).",
        "",
        f"On the package's own items ({real['items']} warm items, all {real['queries']} users as queries) HNSW's "
        f"recall@100 against flat is {real['recall_at_100']}.",
        "",
        "Recommend leaves out the user's training interactions (the default); + exclude_ids also leaves out 100 "
        "IDs the client shows (POST /v1/recommendations).",
        "",
        "| new items | index | replica start (s) | HNSW graph (s) | RSS (MB) | Redis (MB) | recommend k=100 p50 / "
        "p99 (ms) | "
        "+ 100 exclude_ids p50 / p99 (ms) | rank 1,000 p50 / p99 (ms) | recall@100 vs flat |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for x in rows:
        md.append(
            f"| {x['items']:,} | {x['index']} | {x['start_s']} | {x['ann_ready_s'] or ''} | {x['rss_mb']} | "
            f"{x['redis_mb']} | "
            f"{x['recommend_p50_ms']} / {x['recommend_p99_ms']} | {x['filtered_p50_ms']} / "
            f"{x['filtered_p99_ms']} | "
            f"{x['rank_p50_ms']} / {x['rank_p99_ms']} | "
            f"{'' if x['recall_at_100'] is None else x['recall_at_100']} |"
        )
    (RESULTS / f"{args.name}.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
