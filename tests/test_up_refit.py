"""Serve first, refit behind (issue 55): ``coldproxy up`` serves the evaluated package as soon as it is exported,
refits on all the data in a child process, and rolls the refit's package out without losing an item posted
meanwhile. The real command in a subprocess, a real server over HTTP, real Redis."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid

import httpx
import pytest

from tests.conftest import REDIS_URL, _free_port


@pytest.mark.slow
def test_up_serves_the_evaluation_then_rolls_out_the_refit_keeping_a_posted_item(
    tmp_path, train_settings, redis_client
):
    port, prefix = _free_port(), f"coldproxy-test-{uuid.uuid4().hex[:8]}"
    env = os.environ | {
        "COLDPROXY_CACHE_DIR": str(train_settings.cache_dir),
        "COLDPROXY_ID_EPOCHS": "10",
        "COLDPROXY_PROXY_EPOCHS": "3",
        "COLDPROXY_GENERATOR_SEEDS": "1",
        "COLDPROXY_EVAL_EVERY": "1",
        "COLDPROXY_DIFFUSION_EPOCHS": "10",
        "COLDPROXY_GATE_EPOCHS": "3",
        "REDIS_URL": REDIS_URL,
        "COLDPROXY_REDIS_PREFIX": prefix,
        "COLDPROXY_BUNDLES_PACKAGE_DIR": str(tmp_path / "bundles"),
    }
    package = tmp_path / "package"
    log = (tmp_path / "up.log").open("w")
    up = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "coldproxy_cli",
            "up",
            "--no-bundles",
            "--port",
            str(port),
            "--max-items",
            "150",
            "--work-dir",
            str(tmp_path / "work"),
            "--package-dir",
            str(package),
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=url, timeout=30) as c:
            first = wait_for(c, lambda m: m is not None, 600, up, tmp_path)
            assert not first["served"]["refit"], "the first package served is the evaluation's"
            assert first["refit"] is None or first["refit"]["state"] == "training"
            posted = c.post("/v1/items", data={"item_id": "posted-while-refitting", "text": "A heist comedy in Rome"})
            assert posted.status_code == 200, posted.text
            second = wait_for(c, lambda m: m is not None and m["served"]["refit"], 600, up, tmp_path)
            assert second["package_version"] != first["package_version"]
            assert second["evaluation"]["run_id"] == first["evaluation"]["run_id"]
            assert second["served"]["items_by_id"] > first["served"]["items_by_id"]  # the held-out items are warm now
            got = c.get("/v1/items/posted-while-refitting/embedding")
            assert got.status_code == 200 and got.json()["package_version"] == second["package_version"]
            # the status file goes when the refit's process ends, which may be a moment after its package is served
            deadline = time.time() + 60
            while (tmp_path / "package.refit.json").exists() and time.time() < deadline:
                time.sleep(0.5)
            assert not (tmp_path / "package.refit.json").exists()
        assert "refit" in (tmp_path / "package.refit.log").read_text()
    finally:
        up.terminate()
        up.wait(30)
        log.close()
        keys = list(redis_client.scan_iter(f"{prefix}:*"))
        if keys:
            redis_client.delete(*keys)


def wait_for(c: httpx.Client, done, timeout: float, up: subprocess.Popen, tmp_path) -> dict:
    """``GET /v1/model`` until ``done(answer)`` (None while the service is not up yet); fails when ``up`` exits."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert up.poll() is None, (tmp_path / "up.log").read_text()[-3000:]
        try:
            r = c.get("/v1/model")
            model = r.json() if r.status_code == 200 else None
        except httpx.HTTPError:
            model = None
        if done(model):
            return model
        time.sleep(1)
    raise AssertionError(f"timed out: {(tmp_path / 'up.log').read_text()[-3000:]}")
