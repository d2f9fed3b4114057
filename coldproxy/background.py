"""A package trained by a child process in the background (``coldproxy up``: the bundle model, and the refit on all
the data) announces itself in a JSON status file beside the package directory: when it started, how long it is
expected to take, its pid and its log. The service reads it to say what is coming (``service.bundle_wait``,
``service.refit_wait``); the status says "failed" once the child exited with an error or is gone."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path


def status_path(package_dir: Path, suffix: str) -> Path:
    """``<package_dir><suffix>``, e.g. ``artifacts/package.refit.json``."""
    package_dir = Path(package_dir)
    return package_dir.with_name(package_dir.name + suffix)


def announce(path: Path, estimate_s: float, pid: int, log_file: Path) -> None:
    """Process ``pid`` trains the package, for about ``estimate_s``, logging to ``log_file``."""
    Path(path).write_text(
        json.dumps({"started_at": time.time(), "estimate_s": round(estimate_s), "pid": pid, "log": str(log_file)})
    )


def finish(path: Path, error: str | None = None) -> None:
    """Training ended: the status file goes (the package is written), or says why it failed."""
    path = Path(path)
    if error is None:
        path.unlink(missing_ok=True)
        return
    status = read(path) or {}
    path.write_text(json.dumps(status | {"failed": error}))


def read(path: Path) -> dict | None:
    """The announced training, or None when there is none; with "failed" when it failed or its process is gone."""
    try:
        status = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    if "failed" not in status and not alive(status.get("pid")):
        status["failed"] = "the training process is gone"
    return status


def seconds_left(status: dict) -> int:
    """The announced estimate less the time since it started (negative: past it)."""
    return round(status.get("estimate_s", 0) - (time.time() - status.get("started_at", time.time())))


def alive(pid) -> bool:
    if not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
