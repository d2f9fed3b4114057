"""The main job on a fresh clone, timed (issue 55): how long ``bash scripts/main.sh`` takes to serve its first package,
and how long the refit on all the data then takes to serve.

Clones this repository (``git clone --local``: the committed tree, no artifacts, no virtualenv) beside it, so that
``../shared/datasets`` is found as on a fresh clone, and runs ``bash scripts/main.sh`` there with a new virtualenv
(``--venv`` reuses one instead) and a Redis prefix of its own. Times: the virtualenv (until its install stamp is
written), the first package (``/readyz`` 200), and the refit (``GET /v1/model`` says ``served.refit``). With
``--seen-check`` it then runs ``bench/seen_check.py`` on the clone's package. Writes bench/results/up.json (or
``--name``) and removes the clone unless ``--keep``.

    python bench/up.py --seen-check
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import redis

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_dir import RESULTS  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def model(c: httpx.Client) -> dict | None:
    try:
        r = c.get("/v1/model")
        return r.json() if r.status_code == 200 else None
    except httpx.HTTPError:
        return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--venv", type=Path, help="reuse this virtualenv (default: a new one, timed)")
    ap.add_argument("--max-items", type=int, help="train on the N most popular items only (a smoke run)")
    ap.add_argument("--env", action="append", default=[], help="NAME=VALUE for the main job (repeatable)")
    ap.add_argument("--timeout", type=float, default=3600, help="seconds to wait for each stage")
    ap.add_argument("--seen-check", action="store_true", help="then run bench/seen_check.py on the refit's package")
    ap.add_argument("--no-bundles", action="store_true", help="the main job without its bundle model (a smoke run)")
    ap.add_argument("--keep", action="store_true", help="keep the clone")
    ap.add_argument("--name", default="up")
    args = ap.parse_args()
    clone = ROOT.with_name(f"{ROOT.name}-up-{uuid.uuid4().hex[:6]}")
    subprocess.run(["git", "clone", "-q", "--local", str(ROOT), str(clone)], check=True)
    venv = args.venv or Path(tempfile.mkdtemp()) / "venv"
    port, prefix = free_port(), f"coldproxy-up-{uuid.uuid4().hex[:8]}"
    env = os.environ | {"COLDPROXY_VENV": str(venv), "COLDPROXY_REDIS_PREFIX": prefix}
    if args.venv is not None:  # the clone's code first, and the reused virtualenv left as it is: reinstalling it from
        # the clone pointed its editable install at a directory deleted afterwards (every later import failed)
        env |= {"COLDPROXY_VENV_FROZEN": "1", "PYTHONPATH": str(clone)}
    env |= dict(kv.split("=", 1) for kv in args.env)
    if args.max_items:
        env["COLDPROXY_MAX_ITEMS"] = str(args.max_items)
    env.pop("VIRTUAL_ENV", None)
    log_path = clone / "up.log"
    stamp, url = venv / ".coldproxy-installed", f"http://127.0.0.1:{port}"
    t0 = time.time()
    job = subprocess.Popen(
        ["bash", "scripts/main.sh", "--port", str(port)] + ["--no-bundles"] * args.no_bundles,
        cwd=clone,
        env=env,
        stdout=log_path.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    out: dict = {
        "cores": len(os.sched_getaffinity(0)),
        "venv_reused": args.venv is not None,
        "max_items": args.max_items,
        "env": args.env,
    }

    def installed() -> None:  # the virtualenv is done once its install stamp is written
        if "venv_s" not in out and stamp.exists():
            out["venv_s"] = time.time() - t0

    try:
        with httpx.Client(base_url=url, timeout=10) as c:
            first = wait(lambda: model(c), job, log_path, args.timeout, installed)
            out |= {
                "ready_s": time.time() - t0,
                "first_package": first["package_version"],
                "first_served": first["served"],
                "refit_announced": first["refit"],
            }
            t1 = time.time()
            second = wait(
                lambda: (m := model(c)) is not None and m["served"] and m["served"]["refit"] and m,
                job,
                log_path,
                args.timeout,
            )
            out |= {
                "refit_s": time.time() - t1,
                "refit_package": second["package_version"],
                "refit_served": second["served"],
                "evaluation_test_cold": second["evaluation"]["test"]["cold"],
            }
        print(json.dumps(out, indent=2))
        if args.seen_check:
            subprocess.run(
                [
                    sys.executable,
                    str(ROOT / "bench" / "seen_check.py"),
                    "--package",
                    str(clone / "artifacts" / "package"),
                    "--quiet",
                ]
                + ["--max-items", str(args.max_items)] * bool(args.max_items),
                check=True,
                env=env,
            )
    finally:
        os.killpg(job.pid, signal.SIGTERM)
        job.wait(60)
        r = redis.Redis.from_url(env.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
        keys = list(r.scan_iter(f"{prefix}:*"))
        if keys:
            r.delete(*keys)
        if not args.keep:
            shutil.rmtree(clone, ignore_errors=True)
            if args.venv is None:
                shutil.rmtree(venv.parent, ignore_errors=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(out, indent=2, default=str))


def wait(probe, job: subprocess.Popen, log_path: Path, timeout: float, tick=lambda: None):
    """``probe()`` every second until it gives something; fails when the job exits or ``timeout`` passes."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        tick()
        if job.poll() is not None:
            raise SystemExit(f"the main job exited ({job.returncode}):\n{log_path.read_text()[-3000:]}")
        got = probe()
        if got:
            return got
        time.sleep(1)
    raise SystemExit(f"timed out:\n{log_path.read_text()[-3000:]}")


if __name__ == "__main__":
    main()
