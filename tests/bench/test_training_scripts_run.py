"""The training and quality benchmark scripts run to the end at tiny sizes (a few epochs on 150 MovieLens items, a
Youshu slice, generated logs): tuning, diffusion, quality, the decision rule, the external ALS space, the bundle
benchmarks, training cost, the tag leak and the main job on a fresh clone. Slow tier: each is a fresh Python
process."""

from __future__ import annotations

import json
import sys

import pytest

from tests.bench.conftest import BENCH, bench


@pytest.mark.slow
def test_tune_id_model_scores_each_override_on_warm_validation(tmp_path, movielens_dir):
    small = {
        "COLDPROXY_DATA_DIR": str(movielens_dir),
        "COLDPROXY_MAX_ITEMS": "150",
        "COLDPROXY_ID_EPOCHS": "2",
        "COLDPROXY_EVAL_EVERY": "1",
    }
    bench("tune_id_model.py", "{}", '{"lightgcn_layers": 1}', "--seeds", "0", "--out", "t", results=tmp_path, env=small)
    rows = json.loads((tmp_path / "t.json").read_text())["rows"]
    assert [r["override"] for r in rows] == [{}, {"lightgcn_layers": 1}]
    assert all(0 < r["mean"] < 1 for r in rows)


@pytest.mark.slow
def test_tune_generator_scores_each_override_on_validation(small_training, tmp_path):
    bench(
        "tune_generator.py",
        "{}",
        '{"proxy_modalities": "text"}',
        "--seeds",
        "0",
        "--out",
        "g",
        results=tmp_path,
        env=small_training,
    )
    rows = json.loads((tmp_path / "g.json").read_text())["rows"]
    assert [r["override"] for r in rows] == [{}, {"proxy_modalities": "text"}]
    assert all(0 <= r["val_mean"] <= 1 and len(r["best_epochs"]) == 1 for r in rows)
    assert not [k for r in rows for k in r if "test" in k], rows  # tuning never looks at the test split


@pytest.mark.slow
def test_diffusion_scores_every_sampler(small_training, tmp_path):
    bench("diffusion.py", "--seeds", "0", results=tmp_path, env=small_training)
    out = json.loads((tmp_path / "diffusion.json").read_text())
    assert out["seeds"] == [0] and len(out["summary"]) > 3 and (tmp_path / "diffusion.png").stat().st_size > 0


@pytest.mark.slow
def test_quality_writes_the_default_beside_the_baselines(small_training, tmp_path):
    bench(
        "quality.py",
        "--seeds",
        "0",
        "--only",
        "random",
        "popularity",
        "--out",
        "q",
        results=tmp_path,
        env=small_training,
    )
    summary = json.loads((tmp_path / "q.json").read_text())["summary"]
    default = next(m for m in summary if m.startswith("default"))
    assert {"random", "popularity"} <= set(summary)
    assert all(0 <= summary[m]["cold"]["recall@20"]["mean"] <= 1 for m in ("random", "popularity", default))
    # a tuned baseline added to the run: fitted without training a default, the default's row kept
    bench(
        "quality.py",
        "--seeds",
        "0",
        "--merge",
        "--only",
        "content-kNN tuned",
        "--out",
        "q",
        results=tmp_path,
        env=small_training,
    )
    again = json.loads((tmp_path / "q.json").read_text())
    assert again["summary"][default] == summary[default] and "content-kNN tuned" in again["summary"]
    record = again["per_seed"][0]["_tuning"]["content-kNN"]
    assert len(record["grid"]) == 15 and record["chosen"] in [r["point"] for r in record["grid"]]


@pytest.mark.slow
def test_decide_defaults_scores_each_candidate_on_the_decide_part_and_applies_the_rule(small_training, tmp_path):
    args = ("--seeds", "0", "1", "2", "--share", "0.5", "--candidates", "default", "sampler_select", "--name", "d")
    bench("decide_defaults.py", *args, results=tmp_path, env=small_training)
    out = json.loads((tmp_path / "d.json").read_text())
    d = out["decisions"]["sampler_select"]
    assert d["seeds"] == [0, 1, 2] and d["serve"] in ("default", "candidate")
    # the costlier value (choosing the sampler) serves only if it wins on the mean and on two seeds of three
    wins = sum(d["candidate"]) > sum(d["default"]) and sum(c > b for c, b in zip(d["candidate"], d["default"])) >= 2
    assert d["serve"] == ("candidate" if wins else "default")
    runs = (tmp_path / "d_runs.jsonl").read_text().splitlines()
    assert len(runs) == 6 and all(json.loads(r)["decision_cold_items"] > 0 for r in runs)
    bench("decide_defaults.py", *args, results=tmp_path, env=small_training)  # a rerun trains nothing new
    assert len((tmp_path / "d_runs.jsonl").read_text().splitlines()) == 6


@pytest.mark.slow
def test_external_space_fits_als_on_the_exported_splits(small_training, tmp_path):
    splits = tmp_path / "splits"
    bench("quality.py", "--seeds", "0", "--export-splits", str(splits), results=tmp_path, env=small_training)
    bench("external_space.py", str(splits), "--factors", "8", "--iterations", "2", "--threads", "1", results=tmp_path)
    assert (splits / "seed0" / "items.parquet").stat().st_size > 0 and (splits / "seed0" / "users.parquet").exists()


@pytest.mark.slow
def test_bundles_writes_every_row_and_merges_shards(tiny_youshu, tmp_path):
    bench(
        "bundles.py",
        "--seeds",
        "0",
        "1",
        "--scenarios",
        "cold",
        "--name",
        "shard",
        "--quiet",
        results=tmp_path,
        env=tiny_youshu,
    )
    bench("bundles.py", "--merge", str(tmp_path / "shard.json"), results=tmp_path, env=tiny_youshu)
    out = json.loads((tmp_path / "bundles.json").read_text())
    runs = out["runs"]["cold"]
    assert len(runs) == 2 and all("served (variant chosen on tune)" in r for r in runs.values())
    assert (tmp_path / "bundles.md").stat().st_size > 0


@pytest.mark.slow
def test_bundle_backbone_scores_a_variant_on_tune(tiny_youshu, tmp_path):
    bench(
        "bundle_backbone.py",
        "--seeds",
        "0",
        "--variants",
        next(iter(_backbone_variants())),
        "--out",
        str(tmp_path / "runs.jsonl"),
        "--quiet",
        results=tmp_path,
        env=tiny_youshu,
    )
    runs = [json.loads(line) for line in (tmp_path / "runs.jsonl").read_text().splitlines()]
    assert len(runs) == 1 and runs[0]["epochs_run"] == 1 and 0 <= runs[0]["tune_ndcg@20"] <= 1


def _backbone_variants() -> list[str]:
    sys.path.insert(0, str(BENCH))
    from bundle_backbone import VARIANTS

    return list(VARIANTS)


@pytest.mark.slow
def test_train_scale_times_the_id_model_at_two_sizes(tmp_path):
    bench(
        "train_scale.py",
        "--sizes",
        "20000,40000",
        "--modes",
        "bounded:48:0",
        "--timing-only",
        "20000,40000",
        "--timing-epochs",
        "1",
        "--name",
        "t",
        results=tmp_path,
    )
    out = json.loads((tmp_path / "t.json").read_text())
    assert [r["positives"] for r in out["rows"]] == [20000, 40000] and all(
        r["seconds_per_epoch"] > 0 for r in out["rows"]
    )


@pytest.mark.slow
def test_tag_leak_ranks_the_test_cold_items_by_their_tags(tmp_path):
    bench("tag_leak.py", "--seeds", "0", results=tmp_path)
    row = json.loads((tmp_path / "tag_leak.json").read_text())["per_seed"][0]
    assert 0 < row["tagged_share_of_test_cold_items"] < row["tagged_share_of_their_positives"] < 1
    assert 0 < row["cold_recall@20"] <= 1


@pytest.mark.slow
def test_up_times_the_main_job_on_a_fresh_clone_to_its_refit(small_training, tmp_path):
    """The committed tree, cloned, its main job run with this virtualenv on 150 items: the first package, the refit's,
    then the seen check on it."""
    env = ["--env", f"COLDPROXY_CACHE_DIR={small_training['COLDPROXY_CACHE_DIR']}"] + [
        x
        for k in (
            "COLDPROXY_ID_EPOCHS",
            "COLDPROXY_EVAL_EVERY",
            "COLDPROXY_PROXY_EPOCHS",
            "COLDPROXY_GENERATOR_SEEDS",
            "COLDPROXY_DIFFUSION_EPOCHS",
            "COLDPROXY_GATE_EPOCHS",
        )
        for x in ("--env", f"{k}={small_training[k]}")
    ]
    bench(
        "up.py",
        "--venv",
        sys.prefix,
        "--max-items",
        "150",
        "--no-bundles",
        "--seen-check",
        "--timeout",
        "600",
        *env,
        "--name",
        "u",
        results=tmp_path,
        timeout=900,
    )
    out = json.loads((tmp_path / "u.json").read_text())
    assert out["ready_s"] > 0 and out["refit_s"] > 0 and not out["first_served"]["refit"]
    assert out["refit_served"]["refit"] and out["refit_served"]["items_by_id"] == 150
    seen = json.loads((tmp_path / "seen_check.json").read_text())
    assert seen["items_served"] == seen["items_with_interactions"] and seen["recommendations_of_rated_items"] == 0


@pytest.mark.slow
def test_bundle_item_view_chooses_on_tune_and_reports_both_pools(tiny_youshu, tmp_path):
    bench("bundle_item_view.py", "--scenarios", "cold", "--seeds", "0", results=tmp_path, env=tiny_youshu)
    out = json.loads((tmp_path / "bundle_item_view.json").read_text())["runs"]["cold"]
    chosen = out["chosen"]
    tune = {k: v["0"]["tune"]["all_bundles"]["recall@20"] for k, v in out["als"].items()}
    assert len(tune) == 27 and tune[chosen["als"]] == max(tune.values())  # the grid's best on tune, nothing else
    test = out["als"][chosen["als"]]["0"]["test"]
    assert set(test) == {"all_bundles", "new_only"} and all(0 <= v["recall@20"] <= 1 for v in test.values())
    assert all(0 <= g["slot_share"] <= 1 for g in chosen["exposure"].values())
    sys.path.insert(0, str(BENCH))
    from report_bundles import item_view_section

    page = "\n".join(item_view_section(json.loads((tmp_path / "bundle_item_view.json").read_text()), None))
    assert "item view (ALS)" in page and "new only" in page
