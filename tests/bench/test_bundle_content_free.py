"""bench/bundle_content_free.py runs to the end on the real Youshu split (slow tier: it scores every user against
every bundle a few dozen times), and its list is what it says: no model, k new bundles in each top 20."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from coldproxy.config import BundleSettings

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from bundle_content_free import content_free  # noqa: E402


@pytest.mark.slow
def test_the_content_free_list_is_scored_with_k_chosen_on_tune():
    out = content_free("cold", BundleSettings(calibration_cold_slots_grid=[1, 5]))
    for pool in ("all_new", "tune_new"):
        got = out["by_pool"][pool]
        assert got["k"] in (0, 1, 5) and 0 < got["recall@20"] < 1 and 0 < got["ndcg@20"] < 1
