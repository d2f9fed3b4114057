"""Items first, bundles when ready: ``coldproxy up`` serves the item package as soon as it is exported and trains
the bundle model in the background, announcing it in a status file beside the bundle package directory. Until the
package is written, bundle routes answer 503 with the expected wait (and ``/readyz`` says so); a watcher then loads
it into the serving package through the reload path (``State.attach_bundles``). A failed training is reported the
same way (its log named in the service's own log), instead of a 404."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from coldproxy import background

log = logging.getLogger("coldproxy")

POLL_S = 2.0
SUFFIX = ".training.json"


def status_path(package_dir: Path) -> Path:
    return background.status_path(package_dir, SUFFIX)


def announce(package_dir: Path, estimate_s: float, pid: int, log_file: Path) -> None:
    """The bundle model is being trained into ``package_dir`` by process ``pid``, for about ``estimate_s``."""
    background.announce(status_path(package_dir), estimate_s, pid, log_file)


def finish(package_dir: Path, error: str | None = None) -> None:
    """Training ended: the status file goes (the package is there), or says why it failed."""
    background.finish(status_path(package_dir), error)


def training(package_dir: Path | None) -> dict | None:
    """The announced training of the bundle package, when there is one and no package yet."""
    if package_dir is None or (Path(package_dir) / "manifest.json").exists():
        return None
    return background.read(status_path(package_dir))


def wait_detail(status: dict) -> tuple[str, int]:
    """What a bundle route answers while the model trains, and the ``Retry-After`` seconds."""
    if "failed" in status:  # the log's path stays on the server: a client learns nothing of its file system
        return f"bundle model training failed: {status['failed']} (the service's training log says why)", 60
    left = background.seconds_left(status)
    when = f"ready in ~{left} s" if left > 0 else "ready any moment now (it is past its estimate)"
    return f"bundle model training, {when}", min(max(left, 1), 30)


def waiting(state) -> tuple[str, int] | None:
    """Why the bundle routes of ``state`` (a ``service.state.State``) cannot answer yet while the bundle model is on
    its way, with the ``Retry-After`` seconds; None when it is not (served, or not coming)."""
    status = training(state.settings.bundle_package_dir)
    if status is not None:
        return wait_detail(status)
    return ("bundle model package written, loading", 1) if state.awaiting_bundles else None


async def watch(state, poll_s: float = POLL_S) -> None:
    """Load the bundle package as soon as its training writes it; stop when training fails or no one trains it."""
    state.awaiting_bundles = True
    try:
        await _watch(state, poll_s)
    finally:
        state.awaiting_bundles = False


async def _watch(state, poll_s: float) -> None:
    package_dir = state.settings.bundle_package_dir
    while True:
        status = training(package_dir)
        if package_dir is not None and (Path(package_dir) / "manifest.json").exists():
            try:
                if await state.attach_bundles():
                    log.info("bundle model package from the background training loaded")
                return
            except Exception as exc:  # noqa: BLE001 -- a bad package: logged, items keep serving
                log.error("bundle model package at %s refused: %s", package_dir, exc)
                return
        if status is not None and "failed" in status:
            log.error("bundle model training failed: %s; its log: %s", status["failed"], status.get("log"))
            return
        if status is None:
            return
        await asyncio.sleep(poll_s)
