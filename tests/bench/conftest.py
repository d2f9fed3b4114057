"""How the benchmark scripts' tests run one (``bench``: a fresh Python process, its results in a temporary
``COLDPROXY_BENCH_RESULTS`` so that no measured result is overwritten) and the small settings they run it with: a few
epochs on 150 MovieLens items, the test package, a slice of Youshu."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


def bench(script: str, *args: str, results: Path, env: dict | None = None, timeout: int = 600) -> str:
    """Run ``bench/<script>`` with ``args``, results going to ``results``; its stdout (fails on a non-zero exit)."""
    run = subprocess.run(
        [sys.executable, str(BENCH / script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=os.environ | {"COLDPROXY_BENCH_RESULTS": str(results)} | (env or {}),
    )
    assert run.returncode == 0, f"{script} {args} exited {run.returncode}:\n{run.stderr[-3000:]}"
    return run.stdout


@pytest.fixture(scope="package")
def small_training(tmp_path_factory, movielens_dir) -> dict:
    """Environment for a training benchmark in seconds: 150 MovieLens items, a few epochs, one generator seed, a
    feature cache shared by the scripts of this package."""
    root = tmp_path_factory.mktemp("bench-small")
    return {
        "COLDPROXY_DATA_DIR": str(movielens_dir),
        "COLDPROXY_MAX_ITEMS": "150",
        "COLDPROXY_ID_EPOCHS": "2",
        "COLDPROXY_EVAL_EVERY": "1",
        "COLDPROXY_PROXY_EPOCHS": "1",
        "COLDPROXY_GENERATOR_SEEDS": "1",
        "COLDPROXY_DIFFUSION_EPOCHS": "2",
        "COLDPROXY_GATE_EPOCHS": "1",
        "COLDPROXY_CACHE_DIR": str(root / "cache"),
        "COLDPROXY_WORK_DIR": str(root / "train"),
    }


@pytest.fixture
def package_env(train_settings, package_dir) -> dict:
    """Environment that points a script at the test package and the dataset slice it was trained on."""
    return {
        "COLDPROXY_DATA_DIR": str(train_settings.data_dir),
        "COLDPROXY_MAX_ITEMS": str(train_settings.max_items),
        "COLDPROXY_SEED": str(train_settings.seed),
        "COLDPROXY_CACHE_DIR": str(train_settings.cache_dir),
        "COLDPROXY_PACKAGE_DIR": str(package_dir),
    }


@pytest.fixture(scope="package")
def tiny_youshu(tmp_path_factory) -> dict:
    """A slice of Youshu in its own layout (the first 600 users and 500 bundles, every item), and settings that train
    each bundle stage for an epoch: the bundle scripts in seconds instead of minutes."""
    from coldproxy.config import DEFAULT_DATASETS

    src, out = Path(DEFAULT_DATASETS) / "youshu", tmp_path_factory.mktemp("youshu")
    users, bundles = 600, 500
    items = int((src / "Youshu_data_size.txt").read_text().split()[2])

    def keep(name: str, a_max: int, b_max: int | None) -> None:
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        rows = [
            line
            for line in (src / name).read_text().splitlines()
            if int(line.split()[0]) < a_max and (b_max is None or int(line.split()[1]) < b_max)
        ]
        (out / name).write_text("\n".join(rows) + "\n")

    (out / "Youshu_data_size.txt").write_text(f"{users}\t{bundles}\t{items}\n")
    keep("bundle_item.txt", bundles, None)
    keep("user_item.txt", users, None)
    for scenario in ("cold", "warm", "all"):
        for part in ("train", "tune", "test"):
            keep(f"{scenario}/user_bundle_{part}.txt", users, bundles)
    return {
        "COLDPROXY_BUNDLES_DATA_DIR": str(out),
        "COLDPROXY_BUNDLES_ID_EPOCHS": "1",
        "COLDPROXY_BUNDLES_PRIOR_FIXED_EPOCHS": '{"cold": 1}',
        "COLDPROXY_BUNDLES_COMPOSITION_EPOCHS": "1",
        "COLDPROXY_BUNDLES_DIFFUSION_EPOCHS": "1",
        "COLDPROXY_BUNDLES_GATE_EPOCHS": "1",
        "COLDPROXY_BUNDLES_CALIBRATION_COLD_SLOTS_GRID": "[1, 2]",
    }
