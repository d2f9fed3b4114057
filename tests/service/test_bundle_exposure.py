"""bench/bundle_exposure.py on the tests' bundle package (briefly trained on the real Youshu cold split): content-free
bundles posted beside the real held-out new ones reach fewer of the tune users' top-20 slots, for their share of the
catalogue, than the real ones -- the direction the benchmark measures on the served package."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))
from bundle_exposure import NOISE_ONLY, REAL, WARM, WITH_REAL, measure  # noqa: E402
from report_bundles import exposure_section  # noqa: E402


def test_content_free_bundles_reach_fewer_slots_than_real_new_ones(package):
    report = measure(package, per_size=10, seed=0, progress=False)
    beside = report["pools"][WITH_REAL]["groups"]
    noise = [g for g in beside if g not in (REAL, WARM)]
    assert len(noise) == 4 and all(beside[g]["bundles"] == 10 for g in noise)
    assert beside[REAL]["exposure_ratio"] > 0
    for g in noise:
        assert beside[g]["exposure_ratio"] < beside[REAL]["exposure_ratio"], (g, beside)
    for pool in (WITH_REAL, NOISE_ONLY):  # every user's list is 20 long and the shares add up
        groups = report["pools"][pool]["groups"].values()
        assert abs(sum(g["slot_share"] for g in groups) - 1) < 1e-9
        assert abs(sum(g["catalogue_share"] for g in groups) - 1) < 1e-9
        assert sum(g["first_for_users"] for g in groups) == report["pools"][pool]["users"]


def test_the_benchmark_writes_its_table_and_the_results_page_reads_it(package, tmp_path):
    run = subprocess.run(
        [sys.executable, str(BENCH / "bundle_exposure.py"), "--package", str(package), str(package), "--per-size", "2"],
        capture_output=True,
        text=True,
        timeout=600,
        env=os.environ | {"COLDPROXY_BENCH_RESULTS": str(tmp_path)},
    )
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads((tmp_path / "bundle_exposure.json").read_text())
    assert len(report["runs"]) == 2 and report["runs"][0]["scenario"] == "cold"
    assert (tmp_path / "bundle_exposure.md").read_text().count("random items, 3 members") == 4  # 2 packages x 2 pools
    section = exposure_section(report, None)
    assert sum(row.startswith("| 2") for row in section) == 2, section  # one row per package (versions: dates)
