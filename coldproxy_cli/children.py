"""``coldproxy up``'s children: the refit on all the data and the bundle model, each trained in a child process
while the service serves, announced in a status file the service reads (``coldproxy.background``)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
from pathlib import Path

from coldproxy.config import BundleSettings, TrainSettings

DATA_FLAGS = {
    "data": "--data",
    "format": "--format",
    "seed": "--seed",
    "max_items": "--max-items",
    "work_dir": "--work-dir",
    "package_dir": "--package-dir",
}


def stale_bundle_package(package: Path) -> bool:
    """A bundle package of another schema than this release serves (``coldproxy up`` trains a new one
    in its place, as it does where there is none)."""
    from coldproxy.bundle_package import SCHEMA_VERSION

    try:
        found = json.loads((package / "manifest.json").read_text()).get("schema_version")
    except (OSError, ValueError):
        return False  # unreadable: load_bundle_package says what is wrong when the service starts
    if found != SCHEMA_VERSION:
        logging.getLogger("coldproxy").warning(
            "bundle package at %s has schema %s, this release serves %s: training a new one",
            package,
            found,
            SCHEMA_VERSION,
        )
    return found != SCHEMA_VERSION


def served_refit(package_dir: Path) -> bool:
    """Whether the package in ``package_dir`` is a refit on all the data."""
    try:
        return bool(json.loads((Path(package_dir) / "manifest.json").read_text()).get("served", {}).get("refit"))
    except (OSError, ValueError, AttributeError):
        return False


def refit_in_background(args, s: TrainSettings) -> float:
    """Refit the evaluation on all the data and export it in a child process while the evaluated package serves; the
    service rolls the refit's package out once it is written (``service.refit_wait``). Returns the seconds it is
    expected to take."""
    from coldproxy import background
    from models.items.checkpoint import read_metrics
    from models.items.refit import refit_estimate
    from service import refit_wait

    evaluation = read_metrics(s.work_dir) or {}
    flags = [
        x for k, flag in DATA_FLAGS.items() if getattr(args, k, None) is not None for x in (flag, str(getattr(args, k)))
    ]
    log_file = Path(s.package_dir).with_name(Path(s.package_dir).name + ".refit.log")
    status = refit_wait.status_path(s.package_dir)
    child = spawn(
        ["refit", *flags],
        log_file,
        lambda code: background.finish(status, None if code == 0 else f"exit status {code}"),
    )
    estimate = refit_estimate(evaluation, evaluation.get("dataset", {}).get("interactions", 0))
    background.announce(status, estimate, child.pid, log_file)
    logging.getLogger("coldproxy").info(
        "refitting on all the data in the background (pid %d, ~%.0f s, log %s)", child.pid, estimate, log_file
    )
    return estimate


def spawn(argv: list[str], log_file: Path, on_exit, nice: int = 0) -> subprocess.Popen:
    """``coldproxy <argv>`` as a child process logging to ``log_file``, ``nice`` below this process's CPU priority;
    ``on_exit(exit code)`` on a thread when it ends."""
    out = log_file.open("w")
    child = subprocess.Popen(
        [sys.executable, "-m", "coldproxy_cli", *argv],
        stdout=out,
        stderr=subprocess.STDOUT,
        preexec_fn=(lambda: os.nice(nice)) if nice else None,
    )

    def reap() -> None:
        code = child.wait()
        out.close()
        on_exit(code)

    threading.Thread(target=reap, daemon=True, name=f"coldproxy-{argv[0]}").start()
    return child


def bundles_in_background(package: Path, behind_s: float = 0.0) -> None:
    """Train the bundle model in a child process while the items are served: the service answers the bundle routes
    503 with the expected wait until the package is written, then loads it (``service.bundle_wait``). ``behind_s``:
    the expected seconds of a refit training beside it, which goes first: the bundle model then trains at the lowest
    CPU priority (two trainings sharing the cores as equals each run their threads into the other's: on 2 cores the
    refit's ID model took 20x as long a step beside the bundle model's)."""
    import shutil

    from coldproxy.config import usable_cores
    from models.cost import bundle_estimate
    from service import bundle_wait

    if package.exists():  # a package of an older schema: the service would refuse it
        shutil.rmtree(package)
    log_file = package.with_name(package.name + ".training.log")
    child = spawn(
        ["train-bundles", "--bundle-package-dir", str(package)],
        log_file,
        lambda code: bundle_wait.finish(package, None if code == 0 else f"exit status {code}"),
        nice=19 if behind_s else 0,
    )
    bundle_wait.announce(
        package, behind_s + bundle_estimate(BundleSettings().scenario, usable_cores()), child.pid, log_file
    )
    logging.getLogger("coldproxy").info(
        "training the bundle model in the background%s (pid %d, log %s)",
        " after the refit, at the lowest CPU priority" if behind_s else "",
        child.pid,
        log_file,
    )
