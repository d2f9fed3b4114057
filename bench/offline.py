"""Offline backfill throughput (issue 43): items/s of ``coldproxy embed`` with the local engine and with Ray on this
machine (the same cores), beside the HTTP service ingesting the same items (one POST /v1/items each, ``--concurrency``
in flight, through ``coldproxy.client``), and the Redis write rate; then the scaling model for N nodes.

Every engine embeds the same catalogue rows with the same package, into a fresh Parquet dataset (and once into a
fresh Redis prefix, which gives the store's write rate: items stored / seconds spent writing). Without ``--data`` the
generated product catalogue (``models/synthetic_catalogue.py``, ~3,100 articles with a 360x540 JPEG and text) is used.

    python bench/offline.py --package-dir artifacts/package [--items 2000] [--engines local,ray,http,redis]

Writes bench/results/offline.{json,md,png}. Scaling model: a node embeds at the measured 1-node Ray rate, so N nodes
embed at N times it into Parquet; into one Redis the rate is capped by the measured write rate (a Redis Cluster
spreads it over its masters)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from report_service import offline_table
from results_dir import RESULTS

from coldproxy.config import REPO_ROOT, ServiceSettings, usable_cores  # noqa: E402
from service.offline.engines import embed_catalogue  # noqa: E402
from service.offline.inputs import read_catalogue, with_catalogue_root  # noqa: E402


def catalogue_dir(data: Path | None) -> Path:
    if data is not None:
        return data
    from models.synthetic_catalogue import CatalogueSpec, generate

    out = REPO_ROOT / "artifacts" / "offline_bench" / "catalogue"
    if not (out / "items.csv").exists():
        generate(out, CatalogueSpec(products=900, users=200, purchases=5.0))
    return out


async def http_rate(settings: ServiceSettings, rows: list[dict], concurrency: int) -> dict:
    """``coldproxy serve`` in a child process on a fresh prefix; every row POSTed once, ``concurrency`` at a time."""
    from coldproxy.client import AsyncClient

    port, prefix = 18000 + os.getpid() % 1000, f"offline-bench-{uuid.uuid4().hex[:8]}"
    env = os.environ | {
        "COLDPROXY_PACKAGE_DIR": str(settings.package_dir),
        "COLDPROXY_REDIS_PREFIX": prefix,
        "COLDPROXY_BUNDLES_PACKAGE_DIR": "",
        "COLDPROXY_PORT": str(port),
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "coldproxy_cli", "serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        async with AsyncClient(f"http://127.0.0.1:{port}", timeout=120) as cp:
            for _ in range(600):
                try:
                    await cp.model()
                    break
                except Exception:
                    await asyncio.sleep(0.5)
            queue: asyncio.Queue = asyncio.Queue()
            for row in rows:
                queue.put_nowait(row)
            t0 = time.perf_counter()

            async def worker() -> None:
                while not queue.empty():
                    row = queue.get_nowait()
                    image = Path(row["image"]) if row["image"] else None
                    await cp.post_item(f"http-{row['item_id']}", text=row["text"] or None, image=image)

            await asyncio.gather(*(worker() for _ in range(concurrency)))
            seconds = time.perf_counter() - t0
    finally:
        server.terminate()
        server.wait(30)
        flush(settings.redis_url, prefix)
    return {
        "engine": "http",
        "embedded": len(rows),
        "seconds": round(seconds, 2),
        "items_per_s": round(len(rows) / seconds, 1),
        "concurrency": concurrency,
    }


def start_ray() -> float:
    """Seconds to start a one-node Ray cluster on this machine's usable cores. A backfill is a job on a running
    cluster, so the job's items/s leaves this out; the table gives it beside."""
    import ray

    t = time.perf_counter()
    ray.init(num_cpus=usable_cores(), include_dashboard=False, log_to_driver=False, configure_logging=False)
    return round(time.perf_counter() - t, 2)


def flush(url: str, prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(url)
    keys = list(client.scan_iter(f"{prefix}:*", count=10_000))
    for start in range(0, len(keys), 10_000):
        client.delete(*keys[start : start + 10_000])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--package-dir", type=Path, default=REPO_ROOT / "artifacts" / "package")
    ap.add_argument("--data", type=Path, help="a catalogue (items.csv directory or Parquet table)")
    ap.add_argument("--items", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--engines", default="local,ray,http,redis")
    ap.add_argument("--concurrency", type=int, default=16, help="HTTP requests in flight")
    ap.add_argument("--name", default="offline")
    a = ap.parse_args()
    catalogue = catalogue_dir(a.data)
    table = read_catalogue(catalogue).slice(0, a.items)
    settings = with_catalogue_root(ServiceSettings(package_dir=a.package_dir, micro_batching=False), catalogue)
    work = Path(tempfile.mkdtemp(prefix="offline-bench-"))
    rows, engines = [], a.engines.split(",")
    try:
        for engine in [e for e in ("local", "ray") if e in engines]:
            extra = {"cluster_start_s": start_ray()} if engine == "ray" else {}
            r = embed_catalogue(settings, table, out=work / engine, batch=a.batch, engine=engine, progress=False)
            rows.append(r | {"cores": usable_cores()} | extra)
            print(json.dumps(rows[-1]), flush=True)
        if "redis" in engines:
            prefix = f"offline-bench-{uuid.uuid4().hex[:8]}"
            s = settings.model_copy(update={"redis_prefix": prefix})
            try:
                r = embed_catalogue(
                    s, table, redis=True, batch=a.batch, errors=work / "redis.errors.parquet", progress=False
                )
            finally:
                flush(settings.redis_url, prefix)
            rows.append(r | {"engine": "local into redis", "write_items_per_s": round(r["stored"] / r["write_s"], 1)})
            print(json.dumps(rows[-1]), flush=True)
        if "http" in engines:
            rows.append(asyncio.run(http_rate(settings, table.to_pylist(), a.concurrency)))
            print(json.dumps(rows[-1]), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    write(rows, a)


def write(rows: list[dict], a) -> None:
    by = {r["engine"]: r for r in rows}
    node = by.get("ray", by.get("local", {})).get("items_per_s")
    cap = by.get("local into redis", {}).get("write_items_per_s")
    nodes = [1, 2, 4, 8, 16, 32]
    model = {
        n: {
            "parquet": round(n * node, 1) if node else None,
            "redis": round(min(n * node, cap), 1) if node and cap else None,
        }
        for n in nodes
    }
    out = {
        "command": "python bench/offline.py " + " ".join(sys.argv[1:]),
        "cores": usable_cores(),
        "items": a.items,
        "rows": rows,
        "scaling_model": model,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{a.name}.json").write_text(json.dumps(out, indent=2))
    md = [
        f"# Offline backfill throughput ({usable_cores()} cores, {a.items} items)",
        "",
        f"Command: `{out['command']}`",
        "",
    ] + offline_table(rows)
    if cap:
        md += ["", f"Redis write rate (one store, items stored / seconds writing): {cap} items/s."]
    md += [
        "",
        "Scaling model (items/s; a node at the 1-node rate above):",
        "",
        "| nodes | into Parquet | into one Redis |",
        "|---|---|---|",
    ] + [f"| {n} | {m['parquet']} | {m['redis']} |" for n, m in model.items()]
    (RESULTS / f"{a.name}.md").write_text("\n".join(md) + "\n")
    plot(rows, model, RESULTS / f"{a.name}.png")
    print("\n".join(md))


def plot(rows: list[dict], model: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.bar([r["engine"] for r in rows], [r["items_per_s"] for r in rows])
    left.set_ylabel("items/s")
    left.set_title("one machine")
    n = list(model)
    for key in ("parquet", "redis"):
        if all(model[k][key] for k in n):
            right.plot(n, [model[k][key] for k in n], marker="o", label=f"into {key}")
    right.set_xscale("log", base=2)
    right.set_xlabel("nodes")
    right.set_ylabel("items/s (model)")
    right.legend()
    right.set_title("scaling model")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
