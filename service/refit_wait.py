"""Serve first, refit behind: ``coldproxy up`` serves the evaluated package as soon as it is exported and trains the
refit on all the data in the background (``models.items.refit``), announcing it in a status file beside the package
directory (``coldproxy.background``). ``GET /v1/model`` says it is coming and when (``describe``); a watcher reloads
the package directory once the refit's package is written there, which rolls it out as any new package is rolled
out: every stored new item is re-embedded for it before it serves, none lost (``State.reload``)."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

from coldproxy import background
from coldproxy.package import MANIFEST

log = logging.getLogger("coldproxy")

POLL_S = 2.0
SUFFIX = ".refit.json"


def status_path(package_dir: Path) -> Path:
    return background.status_path(package_dir, SUFFIX)


def status(package_dir: Path) -> dict | None:
    """The announced refit of the package in ``package_dir``, or None when none is announced."""
    return background.read(status_path(package_dir))


def describe(package_dir: Path) -> dict | None:
    """What ``GET /v1/model`` says of the refit: training (with the seconds it is expected to take still) or failed
    (the service's log names the training log); None when none is announced."""
    st = status(package_dir)
    if st is None:
        return None
    if "failed" in st:
        return {"state": "failed", "error": st["failed"]}
    return {"state": "training", "expected_in_s": max(0, background.seconds_left(st))}


def refit_written(package_dir: Path, serving_version: str) -> bool:
    """Whether ``package_dir`` holds a refit package other than the one serving."""
    try:
        manifest = json.loads((Path(package_dir) / MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    return manifest.get("version") != serving_version and bool((manifest.get("served") or {}).get("refit"))


async def watch(state, poll_s: float = POLL_S) -> None:
    """Roll the refit's package out as soon as it is written; stop when the refit fails or none is announced."""
    package_dir = state.settings.package_dir
    st = status(package_dir)
    if st is not None and "failed" not in st:
        log.info(
            "serving the evaluated package %s; the refit on all the data trains in the background, expected in "
            "~%d s (log: %s)",
            state.serving.version,
            max(0, background.seconds_left(st)),
            st.get("log"),
        )
    while True:
        if state.serving is not None and refit_written(package_dir, state.serving.version):
            try:
                previous, version, rollout = await state.reload()
                log.info(
                    "the refit's package %s rolled out (was %s): %s",
                    version,
                    previous,
                    rollout["state"] if rollout else "switched",
                )
            except Exception as exc:  # noqa: BLE001 -- a bad package or a failed rollout: logged, the old one serves
                log.error("the refit's package at %s was not rolled out: %s", package_dir, exc)
            return
        st = status(package_dir)
        if st is None:
            return
        if "failed" in st:
            log.error(
                "the refit on all the data failed: %s; its log: %s; still serving %s",
                st["failed"],
                st.get("log"),
                state.serving.version if state.serving else None,
            )
            return
        await asyncio.sleep(poll_s)
