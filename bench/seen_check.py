"""Issue 55's check on a real package, through HTTP: does it serve the whole catalogue, and do recommendations leave
out everything a user interacted with?

Starts the service in-process on ``--package`` (a Redis prefix of its own, deleted afterwards) and reads the package's
dataset itself, independently of the package (``--data``/``--format``, default: the training settings'):

* ``items_served / items_with_interactions``: of the items with any interaction in the data (a positive, or a rating
  below the threshold / a weight <= 0 row), how many ``GET /v1/items/{id}/embedding`` answers 200 (and by which
  source); the same for every item of the catalogue;
* ``recommendations_of_rated_items``: over every user of the data, at each ``--ks``, how many recommended items the
  user interacted with in the data (any rating), with the default ``exclude_seen``.

Prints and writes bench/results/seen_check.json.

    python bench/seen_check.py --package artifacts/package
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import httpx
import redis
import uvicorn
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from results_dir import RESULTS

from coldproxy.config import REPO_ROOT, ServiceSettings, TrainSettings  # noqa: E402
from coldproxy.package import load_package  # noqa: E402
from models.data import load_dataset  # noqa: E402
from service.app import create_app  # noqa: E402
from service.server import uvicorn_config  # noqa: E402


def ready(c: httpx.Client) -> bool:
    try:
        return c.get("/readyz").status_code == 200
    except httpx.HTTPError:
        return False


def serve(package: Path):
    """A service on ``package`` on a free port, with a Redis prefix of its own: (url, server, thread, settings)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings = ServiceSettings(
        package_dir=package,
        redis_prefix=f"coldproxy-seen-check-{uuid.uuid4().hex[:8]}",
        port=port,
        bundle_package_dir=None,
    )
    server = uvicorn.Server(uvicorn_config(create_app(settings), settings, host="127.0.0.1", log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    return f"http://127.0.0.1:{port}", server, thread, settings


def check(c: httpx.Client, ds, ks: list[int], progress: bool) -> dict:
    seen = ds.seen()
    by_user: dict[int, set[str]] = {}
    for u, i in zip(seen.users.tolist(), seen.items.tolist()):
        by_user.setdefault(u, set()).add(ds.item_ids[i])
    interacted = {ds.item_ids[i] for i in set(seen.items.tolist())}
    sources: Counter = Counter()
    for item_id in tqdm(ds.item_ids, desc="GET every item", disable=not progress):
        r = c.get(f"/v1/items/{item_id}/embedding")
        sources[(item_id in interacted, r.json().get("source") if r.status_code == 200 else r.status_code)] += 1
    served = {k: v for k, v in sources.items() if isinstance(k[1], str)}
    rated, answers, unknown_users, requests = 0, 0, 0, 0
    for u, user_id in enumerate(tqdm(ds.user_ids, desc="recommend for every user", disable=not progress)):
        for k in ks:
            r = c.get(f"/v1/users/{user_id}/recommendations", params={"k": k})
            if r.status_code == 404:
                unknown_users += 1
                continue
            r.raise_for_status()
            shown = {x["item_id"] for x in r.json()["items"]}
            hits = len(shown & by_user.get(u, set()))
            rated, answers, requests = rated + hits, answers + bool(hits), requests + 1
    return {
        "items_with_interactions": len(interacted),
        "items_served": sum(v for (has, _), v in served.items() if has),
        "items_served_by_source": {src: v for (has, src), v in served.items() if has},
        "catalogue_items": ds.n_items,
        "catalogue_items_served": sum(served.values()),
        "users": ds.n_users,
        "users_without_a_positive": ds.provenance.get("users_without_a_positive", 0),
        "ks": ks,
        "requests": requests,
        "unknown_users": unknown_users // len(ks),
        "recommendations_of_rated_items": rated,
        "answers_with_a_rated_item": answers,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--package", type=Path, default=REPO_ROOT / "artifacts" / "package")
    ap.add_argument("--data", type=Path, help="the package's dataset (default: COLDPROXY_DATA_DIR's)")
    ap.add_argument("--format", choices=["movielens", "generic"], help="its format (default: COLDPROXY_DATA_FORMAT)")
    ap.add_argument("--max-items", type=int, help="the slice the package was trained on (COLDPROXY_MAX_ITEMS)")
    ap.add_argument("--ks", default="10,100")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args()
    package = load_package(args.package)
    over = {
        k: v
        for k, v in {"data_dir": args.data, "data_format": args.format, "max_items": args.max_items}.items()
        if v is not None
    }
    ds = load_dataset(TrainSettings(**over))
    url, server, thread, settings = serve(args.package)
    try:
        with httpx.Client(base_url=url, timeout=30) as c:
            deadline = time.time() + 120
            while not ready(c):
                if time.time() > deadline or not thread.is_alive():
                    raise SystemExit("the service did not become ready")
                time.sleep(0.2)
            out = {
                "package": package.manifest.version,
                "refit": bool((package.manifest.served or {}).get("refit")),
                "dataset": ds.name,
            } | check(c, ds, [int(k) for k in args.ks.split(",")], not args.quiet)
    finally:
        server.should_exit = True
        thread.join(10)
        r = redis.Redis.from_url(settings.redis_url)
        keys = list(r.scan_iter(f"{settings.redis_prefix}:*"))
        if keys:
            r.delete(*keys)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "seen_check.json").write_text(json.dumps(out, indent=2))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
