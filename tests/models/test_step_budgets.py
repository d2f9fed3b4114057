"""Every stage's step budget and the cost estimate (issue 40): a budget samples a fixed number of rows an epoch once the
data outgrows it and changes nothing below it; the generator trains on its budget; the estimate grows with the data
no faster than the budgets allow and counts the encoders only on a feature-cache miss."""

from __future__ import annotations

import numpy as np

from coldproxy.config import TrainSettings
from models.cost import describe, estimate
from models.training import epoch_rows


def test_an_epoch_visits_every_row_under_the_budget_and_a_fresh_sample_over_it():
    unbudgeted = epoch_rows(np.random.default_rng(7), 100, batch=10, steps=0)
    assert sorted(unbudgeted) == list(range(100))
    assert np.array_equal(epoch_rows(np.random.default_rng(7), 100, batch=10, steps=10), unbudgeted)  # the same draw
    rng = np.random.default_rng(7)
    first, second = epoch_rows(rng, 1000, batch=10, steps=3), epoch_rows(rng, 1000, batch=10, steps=3)
    assert len(first) == len(set(first)) == 30 and len(second) == 30
    assert not np.array_equal(np.sort(first), np.sort(second))  # resampled each epoch
    assert first.min() >= 0 and first.max() < 1000


def test_the_estimate_grows_with_the_data_only_as_far_as_the_budgets_let_it():
    s = TrainSettings(id_steps_per_epoch=48, proxy_steps_per_epoch=48, gate_steps_per_epoch=48)

    def run(n_train: int, **kw) -> dict[str, float]:
        return estimate(
            kw.pop("settings", s),
            n_items=3000,
            n_users=n_train // 50,
            n_train=n_train,
            n_warm_val=n_train // 10,
            n_warm=2400,
            encode_items=kw.pop("encode", 0),
            generators=9,
            cores=2,
        )

    small, big = run(100_000), run(1_000_000)
    assert big["generators"] < 1.1 * small["generators"] + 1  # 48 steps either way; only validation grows
    assert big["id_model"] < 12 * small["id_model"]  # linear in the graph, not the square
    unbounded = run(1_000_000, settings=s.model_copy(update={"id_steps_per_epoch": 0, "proxy_steps_per_epoch": 0}))
    assert unbounded["id_model"] > 5 * big["id_model"] and unbounded["generators"] > 5 * big["generators"]
    assert small["features"] == 0 and run(100_000, encode=3000)["features"] > 0
    assert estimate(s, 3000, 2000, 100_000, 10_000, 2400, 0, 9, cores=4)["id_model"] < small["id_model"]
    assert describe(big).startswith("estimated training time ~")


def test_torch_trains_on_the_cores_this_process_may_use():
    import os

    import torch

    from models.training import use_usable_cores

    before = torch.get_num_threads()
    try:
        assert use_usable_cores() == len(os.sched_getaffinity(0)) == torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


def test_the_pipeline_report_fits_each_stages_growth(tmp_path, monkeypatch):
    import json
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
    import train_scale_report

    monkeypatch.setattr(train_scale_report, "RESULTS", tmp_path)
    stages = dict.fromkeys(train_scale_report.STAGES, 10.0)
    rows = [
        {
            "positives": n,
            "mode": "default",
            "seed": 0,
            "train_positives": n,
            "seconds": stages | {"id_model": n / 1000},
            "total_s": 60 + n / 1000,
            "epochs_run(best)": {"id_model": "50 (30)"},
            "estimate_s": 1.0,
            "peak_rss_mb": 1.0,
            "warm_val_ndcg@20": 0.3,
            "served": "gate",
            "val_cold_ndcg@20": 0.4,
        }
        for n in (100_000, 1_000_000)
    ]
    train_scale_report.write_pipeline(rows, "pipe", "python bench/train_scale.py --pipeline")
    out = json.loads((tmp_path / "pipe.json").read_text())
    assert out["exponents"]["default"]["id_model"] == 1.0 and out["exponents"]["default"]["features"] == 0.0
    assert 0 < out["exponents"]["default"]["total"] < 1 and (tmp_path / "pipe.png").stat().st_size > 0
    assert "| 1,000,000 | default |" in (tmp_path / "pipe.md").read_text()
