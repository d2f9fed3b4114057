"""Rollout benchmark (issue 18): how fast a new model package takes over the stored items, and whether any
item is unavailable while it does, under write and rank load.

Starts ``coldproxy serve`` as its own process on loopback (real Redis, a private key prefix) serving a copy
of ``--package``; stores ``--items`` new items (MovieLens-posters texts + posters) through
POST /v1/items:batch; then, while ``--writers`` clients keep POSTing new items and ``--rankers`` clients
keep ranking items whose POST was acknowledged (every one of them must be found: a ``missing`` one is a
gap), replaces the package files with ``--to`` (default: the same package under another version, which
costs the same graphs) and POSTs /v1/admin/reload, which re-embeds every stored item and switches.
Afterwards every acknowledged item must be served by the new version. Last, ``coldproxy reembed`` (offline)
re-embeds the same items for a third version, timed.

Prints and writes bench/results/<name>.{json,md} (``--name``, default ``rollout``).

    python bench/rollout.py --package artifacts/package [--items 3000] [--writers 4] [--rankers 2]
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import httpx
import redis

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serving import RESULTS, rss_mb, start_server  # noqa: E402

from coldproxy.config import DEFAULT_DATASETS, REPO_ROOT, ServiceSettings  # noqa: E402
from coldproxy.package import Manifest, load_package, write_manifest  # noqa: E402
from loadtest.payloads import Payloads  # noqa: E402


def as_version(src: Path, out: Path, version: str) -> Path:
    """``src`` copied under another version (same graphs and ID space: the same cost as a retrain's package)."""
    shutil.copytree(src, out)
    m = Manifest.model_validate_json((out / "manifest.json").read_text())
    write_manifest(out, m.model_copy(update={"version": version}))
    return out


def item_json(item_id: str, text: str, poster: Path | None) -> dict:
    body = {"item_id": item_id, "text": text}
    if poster is not None:
        body["image_base64"] = base64.b64encode(poster.read_bytes()).decode()
    return body


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--package", type=Path, default=REPO_ROOT / "artifacts" / "package")
    ap.add_argument("--to", type=Path, help="the package rolled out (default: --package under another version)")
    ap.add_argument("--data", type=Path, default=DEFAULT_DATASETS / "movielens-posters")
    ap.add_argument("--items", type=int, default=3000, help="new items stored before the rollout")
    ap.add_argument("--writers", type=int, default=4)
    ap.add_argument("--rankers", type=int, default=2)
    ap.add_argument("--after", type=float, default=5.0, help="seconds of load after the switch")
    ap.add_argument("--name", default="rollout")
    args = ap.parse_args()

    payloads = Payloads.from_movielens(args.data)
    pool = payloads.items
    users = load_package(args.package).user_ids  # users the package knows: an unknown one is a 404 by design
    work = Path(tempfile.mkdtemp(prefix="coldproxy-rollout-"))
    live_dir = work / "live"
    shutil.copytree(args.package, live_dir)
    base = Manifest.model_validate_json((args.package / "manifest.json").read_text()).version
    to = args.to or as_version(args.package, work / "to", base + "-next")
    offline = as_version(
        to, work / "offline", Manifest.model_validate_json((to / "manifest.json").read_text()).version + "-offline"
    )
    prefix = f"coldproxy-bench-rollout-{uuid.uuid4().hex[:8]}"
    port = 18000 + random.Random().randrange(1000)
    os.environ |= {"COLDPROXY_ROLLOUT_WAIT_S": "3600", "COLDPROXY_BUNDLES_PACKAGE_DIR": ""}
    server = start_server(port, prefix, live_dir)
    url = f"http://127.0.0.1:{port}"
    r = redis.Redis.from_url(ServiceSettings().redis_url)
    out: dict = {"package": str(args.package), "items": args.items, "writers": args.writers, "rankers": args.rankers}
    try:
        with httpx.Client(base_url=url, timeout=120) as c:
            t = time.perf_counter()
            acked: list[str] = []
            for start in range(0, args.items, 64):
                batch = [
                    item_json(f"seed-{n}", *pool[n % len(pool)][1:]) for n in range(start, min(args.items, start + 64))
                ]
                res = c.post("/v1/items:batch", json={"items": batch}).json()
                acked += [x["item_id"] for x in res["results"] if x["status"] == 200]
            out["seed_items_per_s"] = round(len(acked) / (time.perf_counter() - t), 1)
            print(f"stored {len(acked)} items ({out['seed_items_per_s']} items/s)")

            stop, lock = threading.Event(), threading.Lock()
            counts = {
                "posts": 0,
                "post_failed": 0,
                "ranks": 0,
                "rank_failed": 0,
                "gaps": 0,
                "missing_ids": 0,
                "failed_statuses": {},
            }
            versions: dict[str, int] = {}

            def writer(k: int) -> None:
                with httpx.Client(base_url=url, timeout=120) as w:
                    n = 0
                    while not stop.is_set():
                        item = pool[(k * 7919 + n) % len(pool)]
                        i, n = f"live-{k}-{n}", n + 1
                        status = w.post("/v1/items", json=item_json(i, *item[1:])).status_code
                        ok = status == 200
                        with lock:
                            counts["posts"] += 1
                            counts["post_failed"] += not ok
                            if not ok:
                                counts["failed_statuses"][f"post {status}"] = (
                                    counts["failed_statuses"].get(f"post {status}", 0) + 1
                                )
                            if ok:
                                acked.append(i)

            def ranker(k: int) -> None:
                rng = random.Random(k)
                with httpx.Client(base_url=url, timeout=120) as w:
                    while not stop.is_set():
                        with lock:
                            ids = rng.sample(acked, 40) + acked[-10:]
                        res = w.post("/v1/rank", json={"user_id": rng.choice(users), "item_ids": ids})
                        with lock:
                            counts["ranks"] += 1
                            if res.status_code != 200:
                                counts["rank_failed"] += 1
                                key = f"rank {res.status_code}: {res.text[:80]}"
                                counts["failed_statuses"][key] = counts["failed_statuses"].get(key, 0) + 1
                                continue
                            body = res.json()
                            versions[body["package_version"]] = versions.get(body["package_version"], 0) + 1
                            counts["gaps"] += bool(body["missing"])
                            counts["missing_ids"] += len(body["missing"])

            threads = [threading.Thread(target=writer, args=(k,)) for k in range(args.writers)]
            threads += [threading.Thread(target=ranker, args=(k,)) for k in range(args.rankers)]
            for th in threads:
                th.start()
            time.sleep(3.0)
            for f in to.iterdir():
                shutil.copy(f, live_dir / f.name)
            t = time.perf_counter()
            res = c.post("/v1/admin/reload")
            out["reload_seconds"] = round(time.perf_counter() - t, 2)
            out["reload"] = res.json()
            print(json.dumps(out["reload"]))
            time.sleep(args.after)
            stop.set()
            for th in threads:
                th.join()
            out["load"] = counts | {"rank_versions": versions}
            out["server_rss_mb"] = round(rss_mb(server.pid), 1)
            new_version = res.json()["package_version"]
            unavailable = [
                i for i in acked if c.get(f"/v1/items/{i}/embedding").json().get("package_version") != new_version
            ]
            out["acknowledged_items"] = len(acked)
            out["unavailable_after_rollout"] = len(unavailable)
        features = r.memory_usage(next(r.scan_iter(f"{prefix}:features:*:item:*", count=1000))) or 0
        out["redis_bytes_per_item_features"] = int(features)
        env = os.environ | {"COLDPROXY_REDIS_PREFIX": prefix}
        t = time.perf_counter()
        cli = subprocess.run(
            [sys.executable, "-m", "coldproxy_cli", "reembed", "--to-package", str(offline)],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        out["offline"] = json.loads(cli.stdout.strip().splitlines()[-1]) | {
            "wall_seconds": round(time.perf_counter() - t, 1)
        }
    finally:
        server.terminate()
        server.wait(30)
        keys = list(r.scan_iter(f"{prefix}:*", count=10_000))
        for k in range(0, len(keys), 10_000):
            r.delete(*keys[k : k + 10_000])
        shutil.rmtree(work, ignore_errors=True)

    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(out, indent=2))
    b, o, load = out["reload"]["rollout"]["backfill"], out["offline"], out["load"]
    md = [
        f"# Rollout: {args.items} stored items, {args.writers} writers + {args.rankers} rankers during the rollout",
        "",
        f"Command: `python bench/rollout.py --package {args.package} --items {args.items} --writers {args.writers} "
        f"--rankers {args.rankers}`",
        "",
        "| measure | value |",
        "|---|---|",
        f"| backfill in the service, under load | {b['reembedded']} items in {b['seconds']:.1f} s = "
        f"{b['items_per_s']} items/s |",
        f"| items already there (POSTed during the backfill) | {b['present']} |",
        f"| POST /v1/admin/reload until switched | {out['reload_seconds']} s |",
        f"| offline `coldproxy reembed` (no load) | {o['reembedded']} items, {o['items_per_s']} items/s "
        f"re-embedding, {o['wall_seconds']} s with start-up |",
        f"| POSTs during the run / failed | {load['posts']} / {load['post_failed']} |",
        f"| rank requests / failed / with a missing acknowledged item | {load['ranks']} / {load['rank_failed']} / "
        f"{load['gaps']} |",
        f"| rankings by version | {load['rank_versions']} |",
        f"| failed requests by status | {load['failed_statuses'] or 'none'} |",
        f"| acknowledged items not served by the new version afterwards | {out['unavailable_after_rollout']} of "
        f"{out['acknowledged_items']} |",
        f"| kept content features per item in Redis (MEMORY USAGE) | {out['redis_bytes_per_item_features']} bytes |",
        f"| service RSS at the end | {out['server_rss_mb']} MB |",
    ]
    (RESULTS / f"{args.name}.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
