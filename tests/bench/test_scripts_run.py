"""Every benchmark script still runs (issue 41: ``bench/serving.py`` had rotted unnoticed): each one that takes
arguments answers ``--help`` (its imports resolve), and the cheap ones run to the end at tiny sizes against real
packages, real Redis and a real server, writing their JSON into a temporary ``COLDPROXY_BENCH_RESULTS`` so that no
measured result is overwritten. Slow tier: each is a fresh Python process."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import _free_port

BENCH = Path(__file__).resolve().parents[2] / "bench"
# scripts that parse arguments (ort_options runs the measurement on any argument; results_dir is a module)
SCRIPTS = sorted(p.name for p in BENCH.glob("*.py") if "ArgumentParser(" in p.read_text())


def bench(script: str, *args: str, results: Path, env: dict | None = None, timeout: int = 600) -> str:
    """Run ``bench/<script>`` with ``args``, results going to ``results``; its stdout (fails on a non-zero exit)."""
    run = subprocess.run([sys.executable, str(BENCH / script), *args], capture_output=True, text=True, timeout=timeout,
                         env=os.environ | {"COLDPROXY_BENCH_RESULTS": str(results)} | (env or {}))
    assert run.returncode == 0, f"{script} {args} exited {run.returncode}:\n{run.stderr[-3000:]}"
    return run.stdout


def test_the_scripts_under_test_are_found():
    assert {"serving.py", "quality.py", "train_scale.py", "providers.py"} <= set(SCRIPTS)


@pytest.mark.slow
@pytest.mark.parametrize("script", SCRIPTS)
def test_every_script_answers_help(script, tmp_path):
    assert "usage:" in bench(script, "--help", results=tmp_path)
    assert not any(tmp_path.iterdir()), "--help wrote results"


@pytest.mark.slow
def test_blend_latency_times_both_graphs(tmp_path):
    bench("blend_latency.py", "--batches", "1", "--runs", "2", results=tmp_path)
    out = json.loads((tmp_path / "blend_latency.json").read_text())
    assert out["p50_ms"]["fused"]["1"] > 0 and out["p50_ms"]["blend"]["1"] > 0


@pytest.mark.slow
def test_providers_compares_each_variant_with_the_cpu_run(package_dir, tmp_path):
    bench("providers.py", "--package-dir", str(package_dir), "--items", "4", "--batches", "1", "2", "--name", "p",
          results=tmp_path)
    out = json.loads((tmp_path / "p.json").read_text())
    assert out["items"] == 4 and out["variants"]
    cpu = next(iter(out["variants"].values()))
    assert set(cpu["by_batch"]) == {"1", "2"} and cpu["vs_cpu"]["served"]["max_abs_diff"] == 0.0


@pytest.mark.slow
def test_seen_check_finds_every_item_served_and_no_rated_item_recommended(package_dir, train_settings, tmp_path):
    bench("seen_check.py", "--package", str(package_dir), "--data", str(train_settings.data_dir), "--max-items",
          str(train_settings.max_items), "--ks", "10", "--quiet", results=tmp_path)
    out = json.loads((tmp_path / "seen_check.json").read_text())
    assert out["items_served"] == out["items_with_interactions"] == out["catalogue_items_served"] == 400
    assert out["requests"] == out["users"] > 0 and out["recommendations_of_rated_items"] == 0


@pytest.mark.slow
def test_overwrites_keep_the_index_answering(package_dir, tmp_path):
    bench("overwrites.py", "--package", str(package_dir), "--items", "2000", "--overwrites", "200", "--queries", "20",
          "--k", "10", "--indexes", "flat", "--name", "o", results=tmp_path)
    rows = json.loads((tmp_path / "o.json").read_text())["rows"]
    assert [r["index"] for r in rows] == ["flat"] and rows[0]["recommend_p50_ms"] > 0


@pytest.mark.slow
def test_ingest_batch_posts_one_by_one_and_in_batches(tiny_server, tmp_path):
    bench("ingest_batch.py", "--url", tiny_server.url, "--items", "6", "--concurrency", "2", "--batch", "3",
          results=tmp_path)
    rows = json.loads((tmp_path / "ingest_batch.json").read_text())["results"]
    assert len(rows) == 2


@pytest.mark.slow
def test_tune_id_model_scores_each_override_on_warm_validation(tmp_path, movielens_dir):
    small = {"COLDPROXY_DATA_DIR": str(movielens_dir), "COLDPROXY_MAX_ITEMS": "150", "COLDPROXY_ID_EPOCHS": "2",
             "COLDPROXY_EVAL_EVERY": "1"}
    bench("tune_id_model.py", "{}", '{"lightgcn_layers": 1}', "--seeds", "0", "--out", "t", results=tmp_path, env=small)
    rows = json.loads((tmp_path / "t.json").read_text())["rows"]
    assert [r["override"] for r in rows] == [{}, {"lightgcn_layers": 1}]
    assert all(0 < r["mean"] < 1 for r in rows)


@pytest.fixture(scope="module")
def small_training(tmp_path_factory, movielens_dir) -> dict:
    """Environment for a training benchmark in seconds: 150 MovieLens items, a few epochs, one generator seed, a
    feature cache shared by this module's scripts."""
    root = tmp_path_factory.mktemp("bench-small")
    return {"COLDPROXY_DATA_DIR": str(movielens_dir), "COLDPROXY_MAX_ITEMS": "150", "COLDPROXY_ID_EPOCHS": "2",
            "COLDPROXY_EVAL_EVERY": "1", "COLDPROXY_PROXY_EPOCHS": "1", "COLDPROXY_GENERATOR_SEEDS": "1",
            "COLDPROXY_DIFFUSION_EPOCHS": "2", "COLDPROXY_GATE_EPOCHS": "1", "COLDPROXY_CACHE_DIR": str(root / "cache"),
            "COLDPROXY_WORK_DIR": str(root / "train")}


@pytest.mark.slow
def test_tune_generator_scores_each_override_on_validation(small_training, tmp_path):
    bench("tune_generator.py", "{}", '{"proxy_modalities": "text"}', "--seeds", "0", "--out", "g", results=tmp_path,
          env=small_training)
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
    bench("quality.py", "--seeds", "0", "--only", "random", "popularity", "--out", "q", results=tmp_path,
          env=small_training)
    summary = json.loads((tmp_path / "q.json").read_text())["summary"]
    default = next(m for m in summary if m.startswith("default"))
    assert {"random", "popularity"} <= set(summary)
    assert all(0 <= summary[m]["cold"]["recall@20"]["mean"] <= 1 for m in ("random", "popularity", default))


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


@pytest.fixture
def package_env(train_settings, package_dir) -> dict:
    """Environment that points a script at the test package and the dataset slice it was trained on."""
    return {"COLDPROXY_DATA_DIR": str(train_settings.data_dir), "COLDPROXY_MAX_ITEMS": str(train_settings.max_items),
            "COLDPROXY_SEED": str(train_settings.seed), "COLDPROXY_CACHE_DIR": str(train_settings.cache_dir),
            "COLDPROXY_PACKAGE_DIR": str(package_dir)}


@pytest.mark.slow
def test_quantize_scores_the_int8_twins_beside_float32(package_dir, package_env, tmp_path):
    copy = tmp_path / "package"  # the twins are written beside the package: a copy keeps the shared one alone
    shutil.copytree(package_dir, copy)
    bench("quantize.py", "--package-dir", str(copy), "--batch", "8", results=tmp_path / "r",
          env=package_env | {"COLDPROXY_PACKAGE_DIR": str(copy)})
    out = json.loads((tmp_path / "r" / "quantize.json").read_text())
    assert {"float32", "int8 text", "int8 text+image"} <= set(out)
    assert out["float32"]["items"] > 0 and all(0 <= out[v]["cold"]["recall@20"] <= 1 for v in ("float32", "int8 text"))


@pytest.mark.slow
def test_ort_options_runs_every_setting_in_its_own_process(package_env, tmp_path):
    bench("ort_options.py", results=tmp_path, env=package_env)
    out = json.loads((tmp_path / "ort_options.json").read_text())
    assert len(out) >= 2 and all(r["items_per_s"] > 0 and r["peak_rss_mb"] > 0 for r in out.values())


@pytest.mark.slow
def test_offline_embeds_with_the_local_engine_into_parquet_and_redis(package_dir, tmp_path):
    bench("offline.py", "--package-dir", str(package_dir), "--items", "12", "--batch", "4", "--engines", "local,redis",
          "--name", "o", results=tmp_path)
    out = json.loads((tmp_path / "o.json").read_text())
    rows = {r["engine"]: r for r in out["rows"]}
    assert rows["local"]["items_per_s"] > 0 and rows["local into redis"]["write_items_per_s"] > 0
    assert out["scaling_model"]["2"]["parquet"] == pytest.approx(2 * rows["local"]["items_per_s"], rel=0.01)


@pytest.mark.slow
def test_rollout_keeps_every_acknowledged_item(package_dir, tmp_path):
    bench("rollout.py", "--package", str(package_dir), "--items", "16", "--writers", "1", "--rankers", "1", "--after",
          "1", "--name", "r", results=tmp_path)
    out = json.loads((tmp_path / "r.json").read_text())
    assert out["acknowledged_items"] >= 16 and out["unavailable_after_rollout"] == 0


@pytest.mark.slow
def test_scale_measures_a_flat_and_an_hnsw_replica(package_dir, tmp_path):
    bench("scale.py", "--package", str(package_dir), "--sizes", "300", "--rate", "10", "--duration", "1",
          "--recall-users", "10", "--name", "s", results=tmp_path)
    rows = json.loads((tmp_path / "s.json").read_text())["rows"]
    assert [r["index"] for r in rows] == ["flat", "hnsw"] and all(r["recommend_errors"] == 0 for r in rows)
    assert 0 < rows[1]["recall_at_100"] <= 1


@pytest.mark.slow
def test_attack_finds_no_5xx_and_the_server_up(package_dir, tmp_path):
    bench("attack.py", "--package-dir", str(package_dir), "--rounds", "1", "--slow-clients", "4", "--out", "a",
          "--idle-hold-s", "2", "--history-posts", "50", "--filtered-items", "3000", results=tmp_path)
    out = json.loads((tmp_path / "a.json").read_text())
    assert out["requests"] > 0 and out["5xx"] == 0 and out["server_alive"] and out["readyz_after"] == 200
    per = out["per_attack"]
    assert per["32 MiB unterminated header"]["bytes_sent_before_refusal"] < 1024 * 1024
    assert per["50 history posts for unknown users"]["statuses"] == {"404": 50}
    assert per["520 idle sockets held 2 s"]["healthz"]["not_200"] == 0
    assert all(v["healthz"]["samples"] > 0 for v in per.values()) and any("3,000 items" in k for k in per)


@pytest.mark.slow
def test_external_space_fits_als_on_the_exported_splits(small_training, tmp_path):
    splits = tmp_path / "splits"
    bench("quality.py", "--seeds", "0", "--export-splits", str(splits), results=tmp_path, env=small_training)
    bench("external_space.py", str(splits), "--factors", "8", "--iterations", "2", "--threads", "1", results=tmp_path)
    assert (splits / "seed0" / "items.parquet").stat().st_size > 0 and (splits / "seed0" / "users.parquet").exists()


@pytest.fixture(scope="module")
def tiny_youshu(tmp_path_factory) -> dict:
    """A slice of Youshu in its own layout (the first 600 users and 500 bundles, every item), and settings that train
    each bundle stage for an epoch: the bundle scripts in seconds instead of minutes."""
    from coldproxy.config import DEFAULT_DATASETS

    src, out = Path(DEFAULT_DATASETS) / "youshu", tmp_path_factory.mktemp("youshu")
    users, bundles = 600, 500
    items = int((src / "Youshu_data_size.txt").read_text().split()[2])

    def keep(name: str, a_max: int, b_max: int | None) -> None:
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        rows = [line for line in (src / name).read_text().splitlines()
                if int(line.split()[0]) < a_max and (b_max is None or int(line.split()[1]) < b_max)]
        (out / name).write_text("\n".join(rows) + "\n")

    (out / "Youshu_data_size.txt").write_text(f"{users}\t{bundles}\t{items}\n")
    keep("bundle_item.txt", bundles, None)
    keep("user_item.txt", users, None)
    for scenario in ("cold", "warm", "all"):
        for part in ("train", "tune", "test"):
            keep(f"{scenario}/user_bundle_{part}.txt", users, bundles)
    return {"COLDPROXY_BUNDLES_DATA_DIR": str(out), "COLDPROXY_BUNDLES_ID_EPOCHS": "1",
            "COLDPROXY_BUNDLES_PRIOR_FIXED_EPOCHS": '{"cold": 1}', "COLDPROXY_BUNDLES_COMPOSITION_EPOCHS": "1",
            "COLDPROXY_BUNDLES_DIFFUSION_EPOCHS": "1", "COLDPROXY_BUNDLES_GATE_EPOCHS": "1",
            "COLDPROXY_BUNDLES_CALIBRATION_COLD_SLOTS_GRID": "[1, 2]"}


@pytest.mark.slow
def test_bundles_writes_every_row_and_merges_shards(tiny_youshu, tmp_path):
    bench("bundles.py", "--seeds", "0", "1", "--scenarios", "cold", "--name", "shard", "--quiet", results=tmp_path,
          env=tiny_youshu)
    bench("bundles.py", "--merge", str(tmp_path / "shard.json"), results=tmp_path, env=tiny_youshu)
    out = json.loads((tmp_path / "bundles.json").read_text())
    runs = out["runs"]["cold"]
    assert len(runs) == 2 and all("served (variant chosen on tune)" in r for r in runs.values())
    assert (tmp_path / "bundles.md").stat().st_size > 0


@pytest.mark.slow
def test_bundle_backbone_scores_a_variant_on_tune(tiny_youshu, tmp_path):
    bench("bundle_backbone.py", "--seeds", "0", "--variants", next(iter(_backbone_variants())), "--out",
          str(tmp_path / "runs.jsonl"), "--quiet", results=tmp_path, env=tiny_youshu)
    runs = [json.loads(line) for line in (tmp_path / "runs.jsonl").read_text().splitlines()]
    assert len(runs) == 1 and runs[0]["epochs_run"] == 1 and 0 <= runs[0]["tune_ndcg@20"] <= 1


def _backbone_variants() -> list[str]:
    sys.path.insert(0, str(BENCH))
    from bundle_backbone import VARIANTS

    return list(VARIANTS)


@pytest.mark.slow
def test_serving_compares_the_service_with_torch_eager(package_dir, train_settings, tmp_path):
    port = _free_port()
    bench("serving.py", "--package", str(package_dir), "--work-dir", str(train_settings.work_dir), "--port", str(port),
          "--levels", "1", "--ingest-items", "3", "--torch-items", "2", "--rate", "20", "--read-seconds", "1",
          "--soak", "0", "--name", "s", results=tmp_path)
    out = json.loads((tmp_path / "s.json").read_text())
    assert out["ingest_service"][0]["throughput_rps"] > 0 and out["ratios"]["service_c1_over_torch_c1"] > 0
    assert all(r["errors"] == 0 for r in out["read_at_rate"])


@pytest.mark.slow
def test_train_scale_times_the_id_model_at_two_sizes(tmp_path):
    bench("train_scale.py", "--sizes", "20000,40000", "--modes", "bounded:48:0", "--timing-only", "20000,40000",
          "--timing-epochs", "1", "--name", "t", results=tmp_path)
    out = json.loads((tmp_path / "t.json").read_text())
    assert [r["positives"] for r in out["rows"]] == [20000, 40000] and all(r["seconds_per_epoch"] > 0
                                                                            for r in out["rows"])


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
        x for k in ("COLDPROXY_ID_EPOCHS", "COLDPROXY_EVAL_EVERY", "COLDPROXY_PROXY_EPOCHS",
                    "COLDPROXY_GENERATOR_SEEDS", "COLDPROXY_DIFFUSION_EPOCHS", "COLDPROXY_GATE_EPOCHS")
        for x in ("--env", f"{k}={small_training[k]}")]
    bench("up.py", "--venv", sys.prefix, "--max-items", "150", "--no-bundles", "--seen-check", "--timeout", "600",
          *env, "--name", "u", results=tmp_path, timeout=900)
    out = json.loads((tmp_path / "u.json").read_text())
    assert out["ready_s"] > 0 and out["refit_s"] > 0 and not out["first_served"]["refit"]
    assert out["refit_served"]["refit"] and out["refit_served"]["items_by_id"] == 150
    seen = json.loads((tmp_path / "seen_check.json").read_text())
    assert seen["items_served"] == seen["items_with_interactions"] and seen["recommendations_of_rated_items"] == 0
