"""Model lifecycle (issue 18): a new package with the same encoders takes over every stored item, under
load, over real HTTP and real Redis; shadow + canary + promote; the offline ``coldproxy reembed``."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import threading
import time

import httpx
import numpy as np
import pytest

from coldproxy.config import ServiceSettings
from coldproxy.package import load_package
from tests.conftest import REDIS_URL, LiveServer, _free_port
from tests.tiny_package import retrain_tiny_package


@pytest.fixture(scope="module")
def second_package(tiny_package_dir, tmp_path_factory):
    """A retrain of the tiny package: same encoders, new generator, another ID space."""
    return retrain_tiny_package(tiny_package_dir, tmp_path_factory.mktemp("tiny2") / "package", seed=7)


@pytest.fixture()
def prefix(fresh_prefix):
    return fresh_prefix


def live(package_dir, prefix, **over) -> LiveServer:
    return LiveServer(
        ServiceSettings(
            **{
                "package_dir": package_dir,
                "redis_url": REDIS_URL,
                "redis_prefix": prefix,
                "port": _free_port(),
                "bundle_package_dir": None,
                "reload_grace_s": 0.2,
            }
            | over
        )
    )


def text_of(item_id: str) -> str:
    return f"A catalogue article called {item_id}, in blue cotton, size {len(item_id)}."


def stored_vector(redis_client, prefix: str, version: str, item_id: str) -> np.ndarray:
    raw = redis_client.hget(f"{prefix}:{version}:item:{item_id}", "emb")
    assert raw is not None, (version, item_id)
    return np.frombuffer(raw, np.float32)


def test_a_rollout_under_load_keeps_every_item_and_never_mixes_id_spaces(
    tiny_package_dir, second_package, prefix, redis_client, tmp_path
):
    import shutil

    live_dir = tmp_path / "package"
    shutil.copytree(tiny_package_dir, live_dir)
    v1, v2 = (load_package(d) for d in (tiny_package_dir, second_package))
    assert v1.encoder_fingerprint == v2.encoder_fingerprint and v1.id_fingerprint != v2.id_fingerprint
    with live(live_dir, prefix, reembed_batch=8) as server, httpx.Client(base_url=server.url, timeout=30) as c:
        model = c.get("/v1/model").json()
        assert model["package_version"] == v1.manifest.version and model["id_fingerprint"] == v1.id_fingerprint
        before = [f"before-{n}" for n in range(120)]
        for i in before:
            assert c.post("/v1/items", data={"item_id": i, "text": text_of(i)}).status_code == 200

        acked, stop, failures, rankings = list(before), threading.Event(), [], []
        lock = threading.Lock()

        def write(worker: int):
            with httpx.Client(base_url=server.url, timeout=30) as w:
                for n in itertools.count():
                    if stop.is_set():
                        return
                    i = f"during-{worker}-{n}"
                    r = w.post("/v1/items", data={"item_id": i, "text": text_of(i)})
                    if r.status_code != 200:
                        failures.append(("post", i, r.status_code, r.text))
                    else:
                        with lock:
                            acked.append(i)

        def rank(worker: int):
            with httpx.Client(base_url=server.url, timeout=30) as w:
                while not stop.is_set():
                    with lock:
                        ids = ["warm-1", "warm-2"] + acked[-6:] + acked[:2]
                    r = w.post("/v1/rank", json={"user_id": str(worker), "item_ids": ids})
                    if r.status_code != 200:
                        failures.append(("rank", r.status_code, r.text))
                        continue
                    body = r.json()
                    if body["missing"]:  # every ID asked for had been acknowledged: a gap
                        failures.append(("missing", body["package_version"], body["missing"]))
                    rankings.append((worker, body))

        threads = [threading.Thread(target=write, args=(k,)) for k in range(2)]
        threads += [threading.Thread(target=rank, args=(k,)) for k in range(2)]
        for t in threads:
            t.start()
        try:
            time.sleep(1.0)
            for name in ("proxy.onnx", "embeddings.npz", "manifest.json"):
                shutil.copy(second_package / name, live_dir / name)
            r = c.post("/v1/admin/reload")
            time.sleep(1.0)
        finally:
            stop.set()
            for t in threads:
                t.join()
        assert r.status_code == 200, r.text
        out = r.json()
        assert out["changed"] and out["package_version"] == v2.manifest.version, out
        report = out["rollout"]["backfill"]
        assert out["rollout"]["state"] == "switched" and report["covered"] == 1.0 and report["failed"] == 0, out
        assert report["reembedded"] >= len(before) and report["no_features"] == 0, report
        assert not failures, failures[:5]

        # every item acknowledged before or during the rollout is served by the new package
        during = [i for i in acked if i.startswith("during-")]
        assert len(during) > 20
        for i in acked:
            got = c.get(f"/v1/items/{i}/embedding")
            assert got.status_code == 200 and got.json()["package_version"] == v2.manifest.version, (i, got.text)

        # no ranking mixed the two ID spaces: each one's scores are its own version's user . item vectors
        spaces = {p.manifest.version: p for p in (v1, v2)}
        versions = {body["package_version"] for _, body in rankings}
        assert versions == set(spaces), versions  # rankings were answered before and after the switch
        for worker, body in rankings:
            package = spaces[body["package_version"]]
            user = package.user_emb[package.user_ids.index(str(worker))]
            for s in body["scores"]:
                i = s["item_id"]
                vec = (
                    package.item_emb[package.item_ids.index(i)]
                    if i.startswith("warm-")
                    else stored_vector(redis_client, prefix, package.manifest.version, i)
                )
                assert s["score"] == pytest.approx(float(user @ vec), rel=1e-4, abs=1e-5), (body["package_version"], i)

        # a re-embedded item is what the new package computes for the same content (features kept as float16)
        kept = np.array(c.get("/v1/items/before-3/embedding").json()["embedding"])
        fresh = np.array(
            c.post("/v1/items", data={"item_id": "fresh-3", "text": text_of("before-3")}).json()["embedding"]
        )
        assert float(kept @ fresh / np.linalg.norm(kept) / np.linalg.norm(fresh)) > 0.999

        # the old version's keys now expire; the metrics say how the rollout went
        assert 0 < redis_client.ttl(f"{prefix}:{v1.manifest.version}:item:before-0") <= 86400
        metrics = c.get("/metrics").text
        assert f'coldproxy_rollout_progress{{version="{v2.manifest.version}"}} 1.0' in metrics
        assert f'coldproxy_serving_version{{role="serving",version="{v2.manifest.version}"}} 1.0' in metrics


def test_a_package_with_other_encoders_is_switched_to_at_once(tiny_package_dir, prefix, tmp_path):
    from tests.tiny_package import build_tiny_package

    other = build_tiny_package(tmp_path / "other", seed=3)
    live_dir = tmp_path / "package"
    import shutil

    shutil.copytree(tiny_package_dir, live_dir)
    with live(live_dir, prefix) as server, httpx.Client(base_url=server.url, timeout=30) as c:
        assert c.post("/v1/items", data={"item_id": "old-1", "text": "kept?"}).status_code == 200
        shutil.rmtree(live_dir)
        shutil.copytree(other, live_dir)
        r = c.post("/v1/admin/reload")
        assert r.status_code == 200 and r.json()["rollout"] is None and r.json()["changed"], r.text
        assert c.get("/v1/items/old-1/embedding").status_code == 404  # features of other encoders: re-POST


def test_shadow_candidate_serves_canary_users_then_is_promoted(tiny_package_dir, second_package, prefix):
    v1, v2 = (load_package(d).manifest.version for d in (tiny_package_dir, second_package))
    with (
        live(tiny_package_dir, prefix, candidate_package_dir=second_package, canary_fraction=0.5) as server,
        httpx.Client(base_url=server.url, timeout=30) as c,
    ):
        for n in range(10):
            assert c.post("/v1/items", data={"item_id": f"s-{n}", "text": text_of(f"s-{n}")}).status_code == 200
        deadline = time.time() + 30
        while c.get("/v1/model").json()["rollout"]["state"] != "shadow" and time.time() < deadline:
            time.sleep(0.1)
        model = c.get("/v1/model").json()
        assert (
            model["package_version"] == v1
            and model["rollout"]["version"] == v2
            and model["rollout"]["state"] == "shadow"
        )
        # every user's answers come from one version, the same every time; about half get the candidate
        seen = {}
        for u in range(20):
            for _ in range(2):
                body = c.post("/v1/rank", json={"user_id": str(u), "item_ids": ["warm-0", "s-1", "s-2"]}).json()
                assert body["missing"] == [] and seen.setdefault(u, body["package_version"]) == body["package_version"]
                rec = c.get(f"/v1/users/{u}/recommendations", params={"k": 5}).json()
                assert rec["package_version"] == seen[u]
        assert 3 <= sum(v == v2 for v in seen.values()) <= 17, seen
        # items and reads outside rank/recommend stay on the serving version
        assert c.get("/v1/items/s-1/embedding").json()["package_version"] == v1
        r = c.post("/v1/admin/promote")
        assert r.status_code == 200 and r.json()["package_version"] == v2, r.text
        assert c.get("/v1/model").json()["package_version"] == v2
        for n in range(10):
            assert c.get(f"/v1/items/s-{n}/embedding").json()["package_version"] == v2
        assert c.post("/v1/admin/promote").status_code == 409
        metrics = c.get("/metrics").text  # both versions' answers are counted
        assert f'coldproxy_answers_total{{route="rank",version="{v2}"}}' in metrics
        assert f'coldproxy_answers_total{{route="rank",version="{v1}"}}' in metrics


def test_promote_catches_up_on_what_was_written_after_the_backfill(tiny_package_dir, second_package, prefix):
    """An item another replica (still without the shadow writes) stored after the candidate's backfill finished is
    re-embedded by the promote itself, not lost when the old version's keys expire."""
    v2 = load_package(second_package).manifest.version
    with (
        live(tiny_package_dir, prefix, candidate_package_dir=second_package) as a,
        live(tiny_package_dir, prefix) as b,
        httpx.Client(base_url=a.url, timeout=30) as ca,
        httpx.Client(base_url=b.url, timeout=30) as cb,
    ):
        deadline = time.time() + 30
        while ca.get("/v1/model").json()["rollout"]["state"] != "shadow" and time.time() < deadline:
            time.sleep(0.1)
        assert cb.post("/v1/items", data={"item_id": "late-1", "text": text_of("late-1")}).status_code == 200
        assert ca.post("/v1/admin/promote").status_code == 200
        got = ca.get("/v1/items/late-1/embedding")
        assert got.status_code == 200 and got.json()["package_version"] == v2, got.text


def test_two_promotes_at_once_switch_once_and_keep_the_serving_package(
    tiny_package_dir, second_package, prefix, redis_client
):
    """A client timeout and a rerun: two concurrent promotes. One switches, the other gets 409; the package now
    serving keeps its keys (no TTL) and takes writes (issue 59: the second switch retired the serving package)."""
    v2 = load_package(second_package).manifest.version
    with (
        live(tiny_package_dir, prefix, candidate_package_dir=second_package) as server,
        httpx.Client(base_url=server.url, timeout=30) as c,
    ):
        assert c.post("/v1/items", json={"item_id": "p-1", "text": text_of("p-1")}).status_code == 200
        deadline = time.time() + 30
        while c.get("/v1/model").json()["rollout"]["state"] != "shadow" and time.time() < deadline:
            time.sleep(0.1)
        statuses = []
        threads = [
            threading.Thread(
                target=lambda: statuses.append(httpx.post(server.url + "/v1/admin/promote", timeout=60).status_code)
            )
            for _ in range(2)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(statuses) == [200, 409], statuses
        time.sleep(0.5)  # past reload_grace_s: the old package has retired
        assert c.get("/v1/model").json()["package_version"] == v2
        assert redis_client.ttl(f"{prefix}:{v2}:item:p-1") == -1  # no expiry on the serving package's keys
        assert c.post("/v1/items", json={"item_id": "p-2", "text": text_of("p-2")}).status_code == 200
        assert c.get("/v1/items/p-1/embedding").json()["package_version"] == v2


def test_promote_refreshes_an_item_overwritten_after_the_backfill(
    tiny_package_dir, second_package, prefix, redis_client
):
    """An overwrite the candidate missed (taken by a replica without the shadow writes) is re-embedded by the
    promote's catch-up, not promoted stale: the catch-up re-embeds what changed, not only what is missing."""
    v2 = load_package(second_package).manifest.version
    with (
        live(tiny_package_dir, prefix, candidate_package_dir=second_package) as a,
        live(tiny_package_dir, prefix) as b,
        httpx.Client(base_url=a.url, timeout=30) as ca,
        httpx.Client(base_url=b.url, timeout=30) as cb,
    ):
        assert ca.post("/v1/items", json={"item_id": "o-1", "text": text_of("o-1")}).status_code == 200
        deadline = time.time() + 30
        while ca.get("/v1/model").json()["rollout"]["state"] != "shadow" and time.time() < deadline:
            time.sleep(0.1)
        stale = stored_vector(redis_client, prefix, v2, "o-1")
        r = cb.post(
            "/v1/items", json={"item_id": "o-1", "text": "a different article: a heavy iron anchor", "overwrite": True}
        )
        assert r.status_code == 200, r.text
        assert np.array_equal(stored_vector(redis_client, prefix, v2, "o-1"), stale)  # b wrote only its own version
        r = ca.post("/v1/admin/promote")
        assert r.status_code == 200 and r.json()["rollout"]["backfill"]["refreshed"] >= 1, r.text
        assert not np.allclose(stored_vector(redis_client, prefix, v2, "o-1"), stale)


def test_reembed_command_backfills_offline_and_resumes(tiny_package_dir, second_package, prefix, redis_client):
    v2 = load_package(second_package).manifest.version
    with live(tiny_package_dir, prefix) as server, httpx.Client(base_url=server.url, timeout=30) as c:
        batch = {"items": [{"item_id": f"o-{n}", "text": text_of(f"o-{n}")} for n in range(40)]}
        assert c.post("/v1/items:batch", json=batch).json()["stored"] == 40
    env = {"COLDPROXY_REDIS_URL": REDIS_URL, "COLDPROXY_REDIS_PREFIX": prefix, "COLDPROXY_BUNDLES_PACKAGE_DIR": ""}
    cmd = [sys.executable, "-m", "coldproxy_cli", "reembed", "--to-package", str(second_package), "--batch", "16"]
    import os

    first = subprocess.run(cmd, env=os.environ | env, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr[-2000:]
    report = json.loads(first.stdout.strip().splitlines()[-1])
    assert report["reembedded"] == 40 and report["covered"] == 1.0, report
    assert redis_client.scard(f"{prefix}:{v2}:items") == 40
    v1 = load_package(tiny_package_dir).manifest.version  # re-embedded items keep when they were first stored
    for n in (0, 39):
        posted = redis_client.hget(f"{prefix}:{v1}:item:o-{n}", "posted_at")
        assert posted and redis_client.hget(f"{prefix}:{v2}:item:o-{n}", "posted_at") == posted
    again = json.loads(
        subprocess.run(cmd, env=os.environ | env, capture_output=True, text=True, timeout=300)
        .stdout.strip()
        .splitlines()[-1]
    )
    assert again["reembedded"] == 0 and again["present"] == 40, again


def test_reloading_replicas_one_after_another_keeps_what_each_wrote(tiny_package_dir, second_package, prefix, tmp_path):
    """Two replicas, reloaded in turn: items POSTed to the one not yet reloaded (old version only) are
    re-embedded by its own rollout, and the first replica indexes them from the new version's stream."""
    import shutil

    dirs = [tmp_path / "a", tmp_path / "b"]
    for d in dirs:
        shutil.copytree(tiny_package_dir, d)
    v2 = load_package(second_package).manifest.version
    with (
        live(dirs[0], prefix) as a,
        live(dirs[1], prefix) as b,
        httpx.Client(base_url=a.url, timeout=30) as ca,
        httpx.Client(base_url=b.url, timeout=30) as cb,
    ):
        for n in range(10):
            assert (ca if n % 2 else cb).post(
                "/v1/items", data={"item_id": f"m-{n}", "text": text_of(f"m-{n}")}
            ).status_code == 200
        for name in ("proxy.onnx", "embeddings.npz", "manifest.json"):
            for d in dirs:
                shutil.copy(second_package / name, d / name)
        assert ca.post("/v1/admin/reload").json()["package_version"] == v2
        for n in range(10, 16):  # b still serves the old package: these land in the old version only
            assert cb.post("/v1/items", data={"item_id": f"m-{n}", "text": text_of(f"m-{n}")}).status_code == 200
        assert ca.get("/v1/items/m-12/embedding").status_code == 404
        r = cb.post("/v1/admin/reload")
        assert r.json()["package_version"] == v2 and r.json()["rollout"]["backfill"]["reembedded"] == 6, r.text
        deadline = time.time() + 10
        while ca.get("/v1/model").json()["cold_items_indexed"] < 16 and time.time() < deadline:
            time.sleep(0.1)
        for c in (ca, cb):
            assert c.get("/v1/model").json()["cold_items_indexed"] == 16
            assert all(c.get(f"/v1/items/m-{n}/embedding").json()["package_version"] == v2 for n in range(16))
