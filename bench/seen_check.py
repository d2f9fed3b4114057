"""Issue 44's check on a real package: no user's default recommendations hold one of their training interactions.

Starts the service in-process on ``--package`` (a Redis prefix of its own, deleted afterwards), asks every user of
the package for their recommendations at each ``--ks``, and counts the answers that hold an item the user interacted
with in training (the package's ``seen`` table). Prints and writes bench/results/seen_check.json.

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
from pathlib import Path

import httpx
import redis
import uvicorn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from results_dir import RESULTS

from coldproxy.config import REPO_ROOT, ServiceSettings  # noqa: E402
from coldproxy.package import load_package  # noqa: E402
from service.app import create_app  # noqa: E402
from service.server import uvicorn_config  # noqa: E402


def ready(c: httpx.Client) -> bool:
    try:
        return c.get("/readyz").status_code == 200
    except httpx.HTTPError:
        return False


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--package", type=Path, default=REPO_ROOT / "artifacts" / "package")
    ap.add_argument("--ks", default="10,100")
    args = ap.parse_args()
    package = load_package(args.package)
    if package.seen is None:
        raise SystemExit(f"{args.package} keeps no training interactions: export it again")
    indptr, rows = package.seen
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    prefix = f"coldproxy-seen-check-{uuid.uuid4().hex[:8]}"
    settings = ServiceSettings(package_dir=args.package, redis_prefix=prefix, port=port, bundle_package_dir=None)
    server = uvicorn.Server(uvicorn_config(create_app(settings), settings, host="127.0.0.1", log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url, ks = f"http://127.0.0.1:{port}", [int(k) for k in args.ks.split(",")]
    bad, total = 0, 0
    try:
        with httpx.Client(base_url=url, timeout=30) as c:
            deadline = time.time() + 120
            while not ready(c):
                if time.time() > deadline or not thread.is_alive():
                    raise SystemExit("the service did not become ready")
                time.sleep(0.2)
            for u, user in enumerate(package.user_ids):
                seen = {package.item_ids[r] for r in rows[indptr[u]: indptr[u + 1]]}
                for k in ks:
                    shown = {x["item_id"]
                             for x in c.get(f"/v1/users/{user}/recommendations", params={"k": k}).json()["items"]}
                    bad, total = bad + bool(seen & shown), total + 1
    finally:
        server.should_exit = True
        thread.join(10)
        r = redis.Redis.from_url(settings.redis_url)
        keys = list(r.scan_iter(f"{prefix}:*"))
        if keys:
            r.delete(*keys)
    out = {"package": package.manifest.version, "users": len(package.user_ids), "ks": ks, "requests": total,
           "answers_with_a_training_interaction": bad}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "seen_check.json").write_text(json.dumps(out, indent=2))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
