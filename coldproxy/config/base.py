"""What every settings class shares: where the repository and the datasets are, and the cores this process may use."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
MEASURED = "bench/results/design_measurements.md"  # why some defaults are what they are
DEFAULT_DATASETS = (REPO_ROOT / ".." / "shared" / "datasets").resolve()


def usable_cores() -> int:
    """Cores this process may run on: its CPU affinity (taskset, a container's cpuset), not the host's count."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
