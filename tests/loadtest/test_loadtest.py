"""The load generator against a real server: bounded, loopback only, and its report is complete."""

import json

import pytest

from loadtest.__main__ import main as loadtest_main
from loadtest.runner import require_loopback


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8000", "http://127.9.9.9:1", "http://localhost:8000", "http://[::1]:8000"]
)
def test_loopback_targets_are_allowed(url):
    require_loopback(url)


@pytest.mark.parametrize("url", ["http://10.0.0.5:8000", "http://192.168.1.2", "http://example.com", "http://8.8.8.8"])
def test_other_targets_are_refused(url):
    with pytest.raises(ValueError, match="loopback"):
        require_loopback(url)


def test_mix_run_writes_report_without_errors(server, movielens_dir, tmp_path):
    out = tmp_path / "lt"
    summary = loadtest_main(
        [
            "--url",
            server.url,
            "--scenario",
            "mix",
            "--requests",
            "80",
            "--duration",
            "60",
            "--concurrency",
            "4",
            "--candidates",
            "100",
            "--data",
            str(movielens_dir),
            "--out",
            str(out),
        ]
    )
    assert summary["overall"]["requests"] == 80
    assert summary["overall"]["errors"] == 0, summary["overall"]["status"]
    assert set(summary["by_scenario"]) >= {"get", "rank"}
    lat = summary["overall"]["latency_ms"]
    assert 0 < lat["p50"] <= lat["p95"] <= lat["p99"] <= lat["max"]
    report = json.loads((out / "loadtest.json").read_text())
    assert report["overall"]["requests"] == 80
    assert (out / "loadtest.png").stat().st_size > 10_000


def test_open_loop_rate_is_bounded_by_duration(server, movielens_dir, tmp_path):
    summary = loadtest_main(
        [
            "--url",
            server.url,
            "--scenario",
            "get",
            "--rate",
            "50",
            "--requests",
            "100000",
            "--duration",
            "1.0",
            "--data",
            str(movielens_dir),
            "--out",
            str(tmp_path),
        ]
    )
    assert 40 <= summary["overall"]["requests"] <= 51
    assert summary["overall"]["errors"] == 0
