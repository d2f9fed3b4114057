"""Bundles from the client's side and while they are on their way: the Python client on every bundle route, and
`coldproxy up`'s items-first start (the bundle routes answer 503 with the wait until the background training writes
the package, which is then loaded without a restart; a failed training is reported, its log named only in the
service's own log)."""

from __future__ import annotations

import time
import uuid

import httpx
import numpy as np
import pytest

from tests.service.test_bundle_service import cold_bundles, members_of


def test_the_python_client_posts_ranks_recommends_and_takes_down_bundles(bundle_server, model):
    from coldproxy.client import Client, ServiceError

    b = cold_bundles(model, 8)[7]
    warm_id = str(int(model.data.warm_bundles[0]))
    with Client(bundle_server.url) as cp:
        posted = cp.post_bundle(f"client-{b}", members_of(model, b))
        np.testing.assert_allclose(posted.embedding, model.bundle_vectors()[b], atol=1e-4)
        assert cp.bundle_embedding(f"client-{b}").source == "proxy"
        ranked = cp.rank_bundles([f"client-{b}", warm_id, "nope"], user_id="7")
        assert ranked.missing == ["nope"] and {s.bundle_id for s in ranked.scores} == {f"client-{b}", warm_id}
        new_only = cp.recommend_bundles(user_id="7", k=5, only="new")
        assert new_only.bundles and all(s.source == "proxy" for s in new_only.bundles)
        cp.delete_bundle(f"client-{b}")
        with pytest.raises(ServiceError) as gone:
            cp.bundle_embedding(f"client-{b}")
        assert gone.value.status == 404


def test_items_are_served_while_the_bundle_model_trains_and_bundles_as_soon_as_it_is_written(
    replica, package, model, tmp_path
):
    """`coldproxy up` serves the items first: while the bundle package is announced but not written, bundle routes
    answer 503 with the wait and /readyz says so; once it is written the watcher loads it, no restart."""
    import os
    import shutil

    from coldproxy.client import Client, Retry, ServiceError
    from service import bundle_wait

    later = tmp_path / "bundle_package"
    bundle_wait.announce(later, 300, os.getpid(), tmp_path / "training.log")
    with replica(bundle_package_dir=later) as live, Client(live.url, retry=Retry(attempts=1)) as cp:
        ready = httpx.get(live.url + "/readyz").json()
        assert ready["status"] == "ready" and "bundle model training, ready in ~" in ready["detail"]
        assert cp.post_item(f"while-{uuid.uuid4().hex[:8]}", text="a film posted while bundles train").source == "proxy"
        with pytest.raises(ServiceError) as waiting:
            cp.recommend_bundles(user_id="7", k=5)
        assert waiting.value.status == 503 and "bundle model training" in waiting.value.detail
        assert 1 <= int(waiting.value.headers["retry-after"]) <= 30

        shutil.copytree(package, tmp_path / "stage")
        (tmp_path / "stage").rename(later)  # as build_bundle_package lands it: whole
        bundle_wait.finish(later)
        deadline = time.time() + 30
        while time.time() < deadline and httpx.get(live.url + "/readyz").json().get("detail"):
            time.sleep(0.2)
        assert "detail" not in httpx.get(live.url + "/readyz").json()
        assert cp.recommend_bundles(user_id="7", k=5).bundles
        assert cp.model().bundle_recommender is not None


def test_a_failed_bundle_training_is_reported_without_the_servers_paths(replica, tmp_path):
    from coldproxy.client import Client, Retry, ServiceError
    from service import bundle_wait

    later = tmp_path / "bundle_package"
    bundle_wait.announce(later, 300, 2**22 + 12345, tmp_path / "training.log")  # no such process
    with replica(bundle_package_dir=later) as live, Client(live.url, retry=Retry(attempts=1)) as cp:
        with pytest.raises(ServiceError) as failed:
            cp.bundle_embedding("12")
        assert failed.value.status == 503 and "training failed: the training process is gone" in failed.value.detail
        assert str(tmp_path) not in failed.value.detail  # the log's path is for the operator, not the client
