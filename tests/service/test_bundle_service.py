"""Bundles end to end: a (briefly trained) MoDiffE bundle model on the real Youshu cold split, exported
to a package, served by a real uvicorn app over real HTTP and real Redis.

What is checked: the package reproduces the trained model (ONNX + numpy vs torch); POST /v1/bundles
of a held-out cold bundle serves exactly the vector the model gives it, its cold calibration included
(set by hand to one that uses every part: the anchor as source, both view scales, the size prior, the
users' placement offsets); the bundle is stored in
Redis under its own namespace, fetched, ranked and recommended; bad input is a 4xx that names the
problem and stores nothing; a second replica sees the bundle.
"""

from __future__ import annotations

import time

import httpx
import numpy as np
import pytest

from coldproxy.bundle_package import FILES, load_bundle_package
from coldproxy.errors import PackageError
from tests.service.conftest import CALIBRATION, YOUSHU


@pytest.fixture()
def bc(bundle_server):
    with httpx.Client(base_url=bundle_server.url, timeout=30) as c:
        yield c


def cold_bundles(model, n: int) -> list[int]:
    """Held-out test bundles of the cold split: no training interactions, not in the package."""
    return [int(b) for b in np.unique(model.data.test.items)[:n]]


def members_of(model, b: int) -> list[str]:
    return [str(i) for i in model.data.members()[b]]


def test_package_reproduces_the_trained_model_and_refuses_tampering(package, model, tmp_path):
    rec = load_bundle_package(package)
    assert rec.manifest.parity["end_to_end"] < 1e-4 and rec.manifest.parity["gate"] < 1e-4
    warm = model.data.warm_bundles
    assert rec.arrays["bundle_ids"].tolist() == [str(b) for b in warm]
    np.testing.assert_allclose(rec.arrays["bundle_emb"], model.bundle_vectors()[warm], atol=1e-6)
    assert rec.arrays["user_emb"].shape == (model.data.n_users, 2 * rec.manifest.dim + 2)
    assert (rec.arrays["user_emb"][:, -2] == 1).all() and (rec.arrays["bundle_emb"][:, -2:] == 0).all()
    np.testing.assert_array_equal(rec.arrays["user_emb"][:, -1], model.placement)
    assert rec.manifest.calibration == CALIBRATION
    # cold: fixed, capped
    assert rec.manifest.metrics["prior"]["fixed_epochs"] == rec.manifest.metrics["prior"]["epochs_run"] == 1

    import shutil

    bad = tmp_path / "tampered"
    shutil.copytree(package, bad)
    with open(bad / FILES["gate"], "ab") as f:
        f.write(b"\0")
    with pytest.raises(PackageError, match="sha256"):
        load_bundle_package(bad)


def test_a_posted_cold_bundle_gets_the_models_vector_and_is_stored_fetched_and_ranked(
    bc, model, redis_client, redis_prefix, package
):
    b = cold_bundles(model, 1)[0]
    members = members_of(model, b)
    # a repeat counts once
    r = bc.post("/v1/bundles", json={"bundle_id": f"cold-{b}", "item_ids": members + members[:1]})
    assert r.status_code == 200, r.text
    out = r.json()
    want = model.bundle_vectors()[b]
    np.testing.assert_allclose(out["embedding"], want, atol=1e-4)
    d = (model.user_vectors().shape[1] - 2) // 2
    np.testing.assert_allclose(out["embedding"][:d], 2.0 * model.diffusion.anchor[b], atol=1e-4)  # the anchor, scaled
    # the size prior and the offset
    assert out["embedding"][-2] == pytest.approx(1.5 * np.log(len(members)) - 0.75, abs=1e-5)
    assert out["embedding"][-1] == 1.0  # met by each user's placement offset
    assert out["members"] == len(members) and out["source"] == "proxy"
    assert out["expert_weights"]["bundle"] == {"prior": 0.0, "diffusion": 1.0}  # no interactions: the B prior is masked
    assert sum(out["expert_weights"]["item"].values()) == pytest.approx(1.0, abs=1e-5)
    assert all(-1 < w < 1 for w in out["view_weights"].values())  # tanh output gate

    version = load_bundle_package(package).version
    key = f"{redis_prefix}:bundles:{version}:item:cold-{b}"
    stored = redis_client.hgetall(key)
    assert np.allclose(np.frombuffer(stored[b"emb"], np.float32), out["embedding"])
    assert stored[b"members"].decode().split(",") == members

    got = bc.get(f"/v1/bundles/cold-{b}/embedding").json()
    assert got["source"] == "proxy" and np.allclose(got["embedding"], out["embedding"])
    warm_id = str(int(model.data.warm_bundles[0]))
    assert bc.get(f"/v1/bundles/{warm_id}/embedding").json()["source"] == "id"

    U = model.user_vectors()
    r = bc.post("/v1/bundles/rank", json={"user_id": "7", "bundle_ids": [f"cold-{b}", warm_id, "no-such-bundle"]})
    assert r.status_code == 200, r.text
    ranked = r.json()
    assert ranked["missing"] == ["no-such-bundle"]
    scores = {s["bundle_id"]: s["score"] for s in ranked["scores"]}
    assert scores[f"cold-{b}"] == pytest.approx(float(U[7] @ want), abs=1e-3)
    assert scores[warm_id] == pytest.approx(float(U[7] @ model.bundle_vectors()[int(warm_id)]), abs=1e-3)
    assert [s["score"] for s in ranked["scores"]] == sorted(scores.values(), reverse=True)

    # the user for whom the new bundle ranks highest among the warm ones gets it in top-k
    warm_scores = U @ model.bundle_vectors()[model.data.warm_bundles].T
    above = (warm_scores > (U @ want)[:, None]).sum(1)
    user = int(np.argmin(above))
    k = int(above[user]) + 1
    assert k <= 1000
    recs = bc.get(f"/v1/users/{user}/bundle-recommendations", params={"k": k, "exclude_seen": "false"}).json()[
        "bundles"
    ]
    assert f"cold-{b}" in [x["bundle_id"] for x in recs]
    # the same user as a vector of the bundle package's space (its own users' form) gets the same answers
    by_vector = bc.post(
        "/v1/bundles/recommendations", json={"user_embedding": U[user].tolist(), "k": k, "id_space": version}
    )
    assert by_vector.status_code == 200 and by_vector.json()["bundles"] == recs, by_vector.text
    r = bc.post("/v1/bundles/rank", json={"user_embedding": U[7].tolist(), "bundle_ids": [f"cold-{b}", warm_id]})
    assert {s["bundle_id"]: s["score"] for s in r.json()["scores"]} == pytest.approx(
        {k_: v for k_, v in scores.items() if k_ != "no-such-bundle"}, abs=1e-4
    )
    assert (
        bc.post("/v1/bundles/rank", json={"user_embedding": U[7][:-1].tolist(), "bundle_ids": [warm_id]}).status_code
        == 422
    )
    assert 'coldproxy_item_lookups_total{catalog="bundles",source="proxy_local"}' in bc.get("/metrics").text
    info = bc.get("/v1/model").json()["bundle_recommender"]
    assert info["package_version"] == info["version"] == version  # "version": the deprecated name
    assert info["cold_bundles_indexed"] >= 1 and info["dim"] == len(want)
    assert info["calibration"] == CALIBRATION.model_dump()
    # its test numbers say they include the serving policy fitted on tune (the fixture's calibration has one)
    protocol = info["test_protocol"]
    assert protocol["split"] == "Youshu cold test" and protocol["includes_serving_policy"] is True
    assert protocol["policy"]["new_bundle_slots"] == CALIBRATION.cold_slots == 3


def test_unknown_members_are_named_and_nothing_is_stored(bc, model):
    members = members_of(model, cold_bundles(model, 2)[1])
    r = bc.post("/v1/bundles", json={"bundle_id": "with-strangers", "item_ids": members + ["99999999", "not-an-item"]})
    assert r.status_code == 422
    assert r.json()["detail"]["unknown_item_ids"] == ["99999999", "not-an-item"]
    assert bc.get("/v1/bundles/with-strangers/embedding").status_code == 404


@pytest.mark.parametrize(
    "body, status",
    [
        ({"bundle_id": "empty", "item_ids": []}, 422),
        ({"bundle_id": "bad id!", "item_ids": ["1"]}, 422),
        ({"bundle_id": "no-members"}, 422),
        ({"bundle_id": "huge", "item_ids": [str(i) for i in range(1001)]}, 413),
        ({"bundle_id": "x", "item_ids": "1,2"}, 422),
        ({"bundle_id": "y", "item_ids": ["1", "not an id", "x" * 200]}, 422),
    ],
)
def test_malformed_bundles_are_refused(bc, body, status):
    r = bc.post("/v1/bundles", json=body)
    assert r.status_code == status, r.text
    assert bc.get(f"/v1/bundles/{body['bundle_id']}/embedding").status_code in (404, 422)


def test_existing_bundles_are_not_overwritten_unless_asked(bc, model):
    b1, b2 = cold_bundles(model, 4)[2:4]
    assert bc.post("/v1/bundles", json={"bundle_id": "shelf", "item_ids": members_of(model, b1)}).status_code == 200
    first = bc.get("/v1/bundles/shelf/embedding").json()["embedding"]
    r = bc.post("/v1/bundles", json={"bundle_id": "shelf", "item_ids": members_of(model, b2)})
    assert r.status_code == 409
    assert bc.get("/v1/bundles/shelf/embedding").json()["embedding"] == first
    r = bc.post("/v1/bundles", json={"bundle_id": "shelf", "item_ids": members_of(model, b2), "overwrite": True})
    assert r.status_code == 200
    np.testing.assert_allclose(
        bc.get("/v1/bundles/shelf/embedding").json()["embedding"], model.bundle_vectors()[b2], atol=1e-4
    )
    warm_id = str(int(model.data.warm_bundles[1]))
    assert bc.post("/v1/bundles", json={"bundle_id": warm_id, "item_ids": ["1"]}).status_code == 409


def test_unknown_users_and_a_deployment_without_bundles_answer_404(bc, client):
    assert bc.post("/v1/bundles/rank", json={"user_id": "nobody", "bundle_ids": ["1"]}).status_code == 404
    assert bc.get("/v1/users/nobody/bundle-recommendations").status_code == 404
    r = client.post("/v1/bundles", json={"bundle_id": "b", "item_ids": ["1"]})  # the shared server has no package
    assert r.status_code == 404 and "bundle recommender" in r.json()["detail"]
    assert client.get("/v1/model").json()["bundle_recommender"] is None


def test_a_bundle_posted_on_one_replica_is_served_by_another(bundle_server, replica, package, model):
    b = cold_bundles(model, 5)[4]
    with replica(bundle_package_dir=package) as other, httpx.Client(timeout=30) as c:
        r = c.post(
            bundle_server.url + "/v1/bundles", json={"bundle_id": "shared-shelf", "item_ids": members_of(model, b)}
        )
        assert r.status_code == 200
        deadline = time.time() + 5
        while time.time() < deadline:
            got = c.get(other.url + "/v1/bundles/shared-shelf/embedding")
            if got.status_code == 200:
                break
            time.sleep(0.05)
        assert got.status_code == 200 and np.allclose(got.json()["embedding"], r.json()["embedding"])
        deadline = time.time() + 5  # and the other replica's index has it (event stream), not just a Redis read
        gauge = 'coldproxy_index_items{catalog="bundles",kind="cold"}'
        while time.time() < deadline:
            lines = [l for l in c.get(other.url + "/metrics").text.splitlines() if l.startswith(gauge)]
            if lines and float(lines[0].split()[-1]) >= 1:
                break
            time.sleep(0.05)
        assert lines and float(lines[0].split()[-1]) >= 1


def test_bundle_recommendations_leave_out_the_users_training_bundles(bc, package):
    loaded = load_bundle_package(package)
    indptr, rows = loaded.seen
    ids = [str(b) for b in loaded.arrays["bundle_ids"]]
    users = [u for u in range(len(indptr) - 1) if indptr[u + 1] > indptr[u]][:20]
    assert users
    for u in users:
        seen = {ids[r] for r in rows[indptr[u] : indptr[u + 1]]}
        shown = bc.get(f"/v1/users/{u}/bundle-recommendations", params={"k": 50}).json()["bundles"]
        assert len(shown) == 50 and not seen & {b["bundle_id"] for b in shown}
        everything = bc.post("/v1/bundles/recommendations", json={"user_id": str(u), "k": 1000, "exclude_seen": False})
        unseen = [b["bundle_id"] for b in everything.json()["bundles"] if b["bundle_id"] not in seen]
        assert [b["bundle_id"] for b in shown] == unseen[:50]


def test_a_bundle_taken_down_leaves_both_replicas(bundle_server, replica, package, model):
    b = cold_bundles(model, 6)[5]
    warm_id = str(int(model.data.warm_bundles[1]))
    U = model.user_vectors()
    fan = {}  # per bundle, the user who scores it highest: it is in their top 1000 whenever it is served

    def shows(c: httpx.Client, url: str, bundle_id: str) -> tuple[bool, bool, bool]:
        user = fan[bundle_id]
        got = c.get(f"{url}/v1/bundles/{bundle_id}/embedding").status_code == 200
        ranked = c.post(f"{url}/v1/bundles/rank", json={"user_id": user, "bundle_ids": [bundle_id]}).json()
        recs = c.post(f"{url}/v1/bundles/recommendations", json={"user_id": user, "k": 1000, "exclude_seen": False})
        listed = bundle_id in {x["bundle_id"] for x in recs.json()["bundles"]}
        return got, not ranked["missing"], listed  # fetched, ranked, recommended

    def settle(c, urls, bundle_id, want) -> bool:
        deadline = time.time() + 5
        while time.time() < deadline and any(shows(c, u, bundle_id) != (want,) * 3 for u in urls):
            time.sleep(0.05)
        return all(shows(c, u, bundle_id) == (want,) * 3 for u in urls)

    with replica(bundle_package_dir=package) as other, httpx.Client(timeout=30) as c:
        urls = [bundle_server.url, other.url]
        r = c.post(
            bundle_server.url + "/v1/bundles", json={"bundle_id": "gone-shelf", "item_ids": members_of(model, b)}
        )
        assert r.status_code == 200
        fan["gone-shelf"] = str(int(np.argmax(U @ np.array(r.json()["embedding"]))))
        fan[warm_id] = str(int(np.argmax(U @ model.bundle_vectors()[int(warm_id)])))
        assert settle(c, urls, "gone-shelf", True)
        assert c.delete(other.url + "/v1/bundles/gone-shelf").status_code == 204
        assert settle(c, urls, "gone-shelf", False)
        assert c.delete(bundle_server.url + "/v1/bundles/gone-shelf").status_code == 404
        assert c.delete(bundle_server.url + f"/v1/bundles/{warm_id}").status_code == 204  # a warm one: hidden
        assert settle(c, urls, warm_id, False)
        assert c.post(other.url + f"/v1/bundles/{warm_id}/restore").status_code == 204
        assert settle(c, urls, warm_id, True)
        assert c.post(other.url + f"/v1/bundles/{warm_id}/restore").status_code == 404


def test_load_generator_bundle_scenarios_run_without_errors(bundle_server, movielens_dir, tmp_path):
    from loadtest.__main__ import main as loadtest_main

    for scenario in ("bundle_ingest", "bundle_rank", "bundle_get", "bundle_recommend"):
        summary = loadtest_main(
            [
                "--url",
                bundle_server.url,
                "--scenario",
                scenario,
                "--requests",
                "20",
                "--duration",
                "60",
                "--concurrency",
                "4",
                "--candidates",
                "100",
                "--data",
                str(movielens_dir),
                "--bundles-data",
                str(YOUSHU),
                "--out",
                str(tmp_path / scenario),
            ]
        )
        assert summary["overall"]["requests"] == 20 and summary["overall"]["errors"] == 0, (
            scenario,
            summary["overall"],
        )


def test_an_empty_package_setting_means_no_bundles(monkeypatch):
    from coldproxy.config import ServiceSettings

    monkeypatch.setenv("COLDPROXY_BUNDLE_RECOMMENDER_DIR", "")
    assert ServiceSettings().bundle_package_dir is None
    monkeypatch.setenv("COLDPROXY_BUNDLE_RECOMMENDER_DIR", "/srv/shelves")
    assert str(ServiceSettings().bundle_package_dir) == "/srv/shelves"


def test_one_variable_names_the_bundle_package_for_training_and_serving(monkeypatch):
    from coldproxy.config import BundleSettings, ServiceSettings

    monkeypatch.setenv("COLDPROXY_BUNDLES_PACKAGE_DIR", "/srv/bundles")
    assert str(ServiceSettings().bundle_package_dir) == str(BundleSettings().package_dir) == "/srv/bundles"
    monkeypatch.delenv("COLDPROXY_BUNDLES_PACKAGE_DIR")
    monkeypatch.setenv("COLDPROXY_BUNDLE_PACKAGE_DIR", "/srv/old-name")  # deprecated, still read by both
    assert str(ServiceSettings().bundle_package_dir) == str(BundleSettings().package_dir) == "/srv/old-name"


def test_a_rollout_carries_posted_bundles_over_to_a_new_bundle_recommender(
    replica, package_dir, package, model, tmp_path, fresh_prefix
):
    """A reload to a new item package and a new bundle recommender: a bundle POSTed before the rollout is
    served by the new bundle recommender, with the vector it computes for its members."""
    import json
    import shutil

    items_dir, bundles_dir = tmp_path / "items", tmp_path / "bundles"
    shutil.copytree(package_dir, items_dir)
    shutil.copytree(package, bundles_dir)
    b1, b2 = cold_bundles(model, 7)[5:7]
    # keys of its own: in the full suite other tests' bundles share the session's prefix
    with (
        replica(
            package_dir=items_dir, bundle_package_dir=bundles_dir, reload_grace_s=0.2, redis_prefix=fresh_prefix
        ) as live,
        httpx.Client(base_url=live.url, timeout=60) as c,
    ):
        old = c.get("/v1/model").json()
        first = c.post("/v1/bundles", json={"bundle_id": "carried-1", "item_ids": members_of(model, b1)})
        assert first.status_code == 200
        for d in (items_dir, bundles_dir):  # "retrained": same files, new versions
            m = json.loads((d / "manifest.json").read_text())
            m["version"] += "-r2"
            (d / "manifest.json").write_text(json.dumps(m))
        r = c.post("/v1/admin/reload")
        assert r.status_code == 200, r.text
        report = r.json()["rollout"]["backfill"]
        assert report["bundles_reembedded"] == 1 and report["bundles_failed"] == 0, report
        assert (
            c.get("/v1/model").json()["bundle_recommender"]["version"] == old["bundle_recommender"]["version"] + "-r2"
        )
        got = c.get("/v1/bundles/carried-1/embedding")
        assert got.status_code == 200 and got.json()["package_version"].endswith("-r2")
        assert np.allclose(got.json()["embedding"], first.json()["embedding"], atol=1e-5)  # same model, same members
        assert c.post("/v1/bundles", json={"bundle_id": "after", "item_ids": members_of(model, b2)}).status_code == 200


def test_coldproxy_up_replaces_a_bundle_package_of_an_older_schema(package, tmp_path):
    """A package from before the cold calibration (schema 1) is refused by the service, so `coldproxy up`
    trains a new one in its place instead of failing to serve."""
    import json
    import shutil

    from coldproxy_cli.children import stale_bundle_package

    assert not stale_bundle_package(package)
    old = tmp_path / "schema1"
    shutil.copytree(package, old)
    manifest = json.loads((old / "manifest.json").read_text())
    (old / "manifest.json").write_text(json.dumps(manifest | {"schema_version": 1}))
    assert stale_bundle_package(old)
    with pytest.raises(PackageError, match="schema 1"):
        load_bundle_package(old)
