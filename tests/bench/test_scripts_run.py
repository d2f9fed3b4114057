"""Every benchmark script still runs (issue 41: ``bench/serving.py`` had rotted unnoticed): each one that takes
arguments answers ``--help`` (its imports resolve), and the cheap service-side ones (serving, ingestion, reads,
rollouts, attacks, the offline backfill, ONNX Runtime options) run to the end at tiny sizes against real packages, real
Redis and a real server (``tests/bench/test_training_scripts_run.py`` has the training ones). Slow tier: each is a
fresh Python process."""

from __future__ import annotations

import json
import shutil

import pytest

from tests.bench.conftest import BENCH, bench
from tests.conftest import _free_port

# scripts that parse arguments (ort_options runs the measurement on any argument; results_dir is a module)
SCRIPTS = sorted(p.name for p in BENCH.glob("*.py") if "ArgumentParser(" in p.read_text())


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
    bench(
        "providers.py",
        "--package-dir",
        str(package_dir),
        "--items",
        "4",
        "--batches",
        "1",
        "2",
        "--name",
        "p",
        results=tmp_path,
    )
    out = json.loads((tmp_path / "p.json").read_text())
    assert out["items"] == 4 and out["variants"]
    cpu = next(iter(out["variants"].values()))
    assert set(cpu["by_batch"]) == {"1", "2"} and cpu["vs_cpu"]["served"]["max_abs_diff"] == 0.0


@pytest.mark.slow
def test_seen_check_finds_every_item_served_and_no_rated_item_recommended(package_dir, train_settings, tmp_path):
    bench(
        "seen_check.py",
        "--package",
        str(package_dir),
        "--data",
        str(train_settings.data_dir),
        "--max-items",
        str(train_settings.max_items),
        "--ks",
        "10",
        "--quiet",
        results=tmp_path,
    )
    out = json.loads((tmp_path / "seen_check.json").read_text())
    assert out["items_served"] == out["items_with_interactions"] == out["catalogue_items_served"] == 400
    assert out["requests"] == out["users"] > 0 and out["recommendations_of_rated_items"] == 0


@pytest.mark.slow
def test_overwrites_keep_the_index_answering(package_dir, tmp_path):
    bench(
        "overwrites.py",
        "--package",
        str(package_dir),
        "--items",
        "2000",
        "--overwrites",
        "200",
        "--queries",
        "20",
        "--k",
        "10",
        "--indexes",
        "flat",
        "--name",
        "o",
        results=tmp_path,
    )
    rows = json.loads((tmp_path / "o.json").read_text())["rows"]
    assert [r["index"] for r in rows] == ["flat"] and rows[0]["recommend_p50_ms"] > 0


@pytest.mark.slow
def test_ingest_batch_posts_one_by_one_and_in_batches(tiny_server, tmp_path):
    bench(
        "ingest_batch.py",
        "--url",
        tiny_server.url,
        "--items",
        "6",
        "--concurrency",
        "2",
        "--batch",
        "3",
        results=tmp_path,
    )
    rows = json.loads((tmp_path / "ingest_batch.json").read_text())["results"]
    assert len(rows) == 2


@pytest.mark.slow
def test_quantize_scores_the_int8_twins_beside_float32(package_dir, package_env, tmp_path):
    copy = tmp_path / "package"  # the twins are written beside the package: a copy keeps the shared one alone
    shutil.copytree(package_dir, copy)
    bench(
        "quantize.py",
        "--package-dir",
        str(copy),
        "--batch",
        "8",
        results=tmp_path / "r",
        env=package_env | {"COLDPROXY_PACKAGE_DIR": str(copy)},
    )
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
    bench(
        "offline.py",
        "--package-dir",
        str(package_dir),
        "--items",
        "12",
        "--batch",
        "4",
        "--engines",
        "local,redis",
        "--name",
        "o",
        results=tmp_path,
    )
    out = json.loads((tmp_path / "o.json").read_text())
    rows = {r["engine"]: r for r in out["rows"]}
    assert rows["local"]["items_per_s"] > 0 and rows["local into redis"]["write_items_per_s"] > 0
    assert out["scaling_model"]["2"]["parquet"] == pytest.approx(2 * rows["local"]["items_per_s"], rel=0.01)


@pytest.mark.slow
def test_rollout_keeps_every_acknowledged_item(package_dir, tmp_path):
    bench(
        "rollout.py",
        "--package",
        str(package_dir),
        "--items",
        "16",
        "--writers",
        "1",
        "--rankers",
        "1",
        "--after",
        "1",
        "--name",
        "r",
        results=tmp_path,
    )
    out = json.loads((tmp_path / "r.json").read_text())
    assert out["acknowledged_items"] >= 16 and out["unavailable_after_rollout"] == 0


@pytest.mark.slow
def test_scale_measures_a_flat_and_an_hnsw_replica(package_dir, tmp_path):
    bench(
        "scale.py",
        "--package",
        str(package_dir),
        "--sizes",
        "300",
        "--rate",
        "10",
        "--duration",
        "1",
        "--recall-users",
        "10",
        "--name",
        "s",
        results=tmp_path,
    )
    rows = json.loads((tmp_path / "s.json").read_text())["rows"]
    assert [r["index"] for r in rows] == ["flat", "hnsw"] and all(r["recommend_errors"] == 0 for r in rows)
    assert 0 < rows[1]["recall_at_100"] <= 1


@pytest.mark.slow
def test_attack_finds_no_5xx_and_the_server_up(package_dir, tmp_path):
    bench(
        "attack.py",
        "--package-dir",
        str(package_dir),
        "--rounds",
        "1",
        "--slow-clients",
        "4",
        "--out",
        "a",
        "--idle-hold-s",
        "2",
        "--history-posts",
        "50",
        "--filtered-items",
        "3000",
        results=tmp_path,
    )
    out = json.loads((tmp_path / "a.json").read_text())
    assert out["requests"] > 0 and out["5xx"] == 0 and out["server_alive"] and out["readyz_after"] == 200
    per = out["per_attack"]
    assert per["32 MiB unterminated header"]["bytes_sent_before_refusal"] < 1024 * 1024
    assert per["50 history posts for unknown users"]["statuses"] == {"404": 50}
    assert per["520 idle sockets held 2 s"]["healthz"]["not_200"] == 0
    assert all(v["healthz"]["samples"] > 0 for v in per.values()) and any("3,000 items" in k for k in per)


@pytest.mark.slow
def test_serving_compares_the_service_with_torch_eager(package_dir, train_settings, tmp_path):
    port = _free_port()
    bench(
        "serving.py",
        "--package",
        str(package_dir),
        "--work-dir",
        str(train_settings.work_dir),
        "--port",
        str(port),
        "--levels",
        "1",
        "--ingest-items",
        "3",
        "--torch-items",
        "2",
        "--rate",
        "20",
        "--read-seconds",
        "1",
        "--soak",
        "0",
        "--name",
        "s",
        results=tmp_path,
    )
    out = json.loads((tmp_path / "s.json").read_text())
    assert out["ingest_service"][0]["throughput_rps"] > 0 and out["ratios"]["service_c1_over_torch_c1"] > 0
    assert all(r["errors"] == 0 for r in out["read_at_rate"])
