"""`coldproxy up` trains the bundle model in a child process and announces it for the service
(``service.bundle_wait``): the announcement names the child and its log while it runs, and says why when it fails."""

from __future__ import annotations

import time

from coldproxy_cli.children import bundles_in_background
from service import bundle_wait


def test_the_background_training_is_announced_and_its_failure_reported(tmp_path, monkeypatch):
    monkeypatch.setenv("COLDPROXY_BUNDLES_DATA_DIR", str(tmp_path / "no-youshu-here"))  # the child fails at once
    package = tmp_path / "bundle_package"
    (package / "stale").mkdir(parents=True)  # a package of an older schema goes first
    bundles_in_background(package)
    assert not package.exists()
    status = bundle_wait.training(package)
    assert status is not None and status["log"].endswith("bundle_package.training.log")
    deadline = time.time() + 120
    while time.time() < deadline and "failed" not in (bundle_wait.training(package) or {}):
        time.sleep(0.5)
    failed = bundle_wait.training(package)
    assert failed is not None and failed["failed"].startswith("exit status"), failed
    detail, retry = bundle_wait.wait_detail(failed)
    assert "bundle model training failed" in detail and retry == 60
    assert "no-youshu-here" in (tmp_path / "bundle_package.training.log").read_text()


def test_the_wait_is_counted_down_from_the_estimate(tmp_path):
    import os

    bundle_wait.announce(tmp_path / "p", 100, os.getpid(), tmp_path / "log")
    detail, retry = bundle_wait.wait_detail(bundle_wait.training(tmp_path / "p"))
    assert detail.startswith("bundle model training, ready in ~") and 1 <= retry <= 30
    late = bundle_wait.training(tmp_path / "p") | {"started_at": time.time() - 500}
    assert "past its estimate" in bundle_wait.wait_detail(late)[0]
    bundle_wait.finish(tmp_path / "p")
    assert bundle_wait.training(tmp_path / "p") is None
