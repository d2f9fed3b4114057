"""Serving a recommender's own space (issue 38) over real HTTP and real Redis, on the tiny package (fast tier):
ranking for a user vector the package never saw, every bad vector refused with a 4xx, the recommender's latest item
vectors followed on two replicas (PUT /v1/items:id-embeddings, ``coldproxy sync-ids``), and a rollout that carries
those vectors to a package of the same space and never into another one."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time

import httpx
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from coldproxy.package import load_package
from tests.service.test_rollout import live
from tests.tiny_package import ID_DIM, retrain_tiny_package


def vector(seed: int, scale: float = 1.0) -> list[float]:
    return (scale * np.random.default_rng(seed).standard_normal(ID_DIM)).astype(np.float32).tolist()


def settled(check, timeout: float = 10.0) -> bool:
    """Whether ``check()`` comes true within ``timeout`` seconds (another replica follows the store's stream)."""
    deadline = time.time() + timeout
    while not check():
        if time.time() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_a_posted_item_ranks_for_a_user_vector_the_package_never_saw(tiny, tiny_package_dir):
    package = load_package(tiny_package_dir)
    r = tiny.post("/v1/items", json={"item_id": "vec-new-1", "text": "a wooden garden bench", "overwrite": True})
    assert r.status_code == 200, r.text
    new = np.array(r.json()["embedding"], np.float32)
    user = np.array(vector(1), np.float32)
    r = tiny.post("/v1/rank", json={"user_embedding": user.tolist(), "item_ids": ["warm-3", "vec-new-1", "nope-1"]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["user_id"] is None and body["missing"] == ["nope-1"]
    scores = {s["item_id"]: (s["score"], s["source"]) for s in body["scores"]}
    assert scores["vec-new-1"][1] == "proxy" and scores["warm-3"][1] == "id"
    assert scores["vec-new-1"][0] == pytest.approx(float(user @ new), rel=1e-5, abs=1e-6)
    assert scores["warm-3"][0] == pytest.approx(float(user @ package.item_emb[3]), rel=1e-5, abs=1e-6)

    r = tiny.post("/v1/recommendations", json={"user_embedding": user.tolist(), "k": 5})
    assert r.status_code == 200, r.text
    got = [(x["item_id"], x["score"]) for x in r.json()["items"]]
    assert len(got) == 5 and [s for _, s in got] == sorted((s for _, s in got), reverse=True)
    everything = {i: float(user @ v) for i, v in zip(package.item_ids, package.item_emb)}
    assert got[0][1] >= max(everything.values()) - 1e-5  # nothing scores above the first

    # the GET and POST forms agree for a package user; id_space names the served space
    fingerprint = tiny.get("/v1/model").json()["id_fingerprint"]
    a = tiny.get("/v1/users/3/recommendations", params={"k": 4}).json()["items"]
    b = tiny.post("/v1/recommendations", json={"user_id": "3", "k": 4, "id_space": fingerprint}).json()["items"]
    assert a == b


def test_every_bad_user_vector_gets_a_clear_4xx(tiny):
    fingerprint = tiny.get("/v1/model").json()["id_fingerprint"]
    cases = [
        ({"user_id": "3", "user_embedding": vector(1)}, 422, "exactly one of user_id and user_embedding"),
        ({}, 422, "exactly one of user_id and user_embedding"),
        ({"user_embedding": vector(1)[:-1]}, 422, f"must have {ID_DIM} values"),
        ({"user_embedding": vector(1, scale=1e6)}, 422, "above"),
        ({"user_embedding": ["x"] * ID_DIM}, 422, "float"),
        ({"user_embedding": vector(1), "id_space": "0123456789abcdef"}, 409, fingerprint),
        ({"user_id": "no-such-user"}, 404, "unknown user"),
    ]
    for body, status, message in cases:
        for route, extra in (("/v1/rank", {"item_ids": ["warm-1"]}), ("/v1/recommendations", {"k": 3})):
            r = tiny.post(route, json=body | extra)
            assert r.status_code == status and message in r.text, (route, body, r.status_code, r.text[:300])
    too_long = {"user_embedding": [0.0] * 5000}  # a ranking's body may hold that many values, a recommendation's not
    r = tiny.post("/v1/rank", json=too_long | {"item_ids": ["warm-1"]})
    assert r.status_code == 422 and "at most 4096" in r.text, r.text
    r = tiny.post("/v1/recommendations", json=too_long | {"k": 3})
    assert r.status_code == 413 and "JSON values" in r.text, r.text
    nan = tiny.post(
        "/v1/rank",
        content=b'{"user_embedding": [NaN' + b", 0.0" * (ID_DIM - 1) + b'], "item_ids": ["warm-1"]}',
        headers={"content-type": "application/json"},
    )
    assert nan.status_code == 422, nan.text


def test_the_recommenders_vectors_are_served_by_every_replica(tiny_package_dir, fresh_prefix, tmp_path):
    package = load_package(tiny_package_dir)
    with (
        live(tiny_package_dir, fresh_prefix) as a,
        live(tiny_package_dir, fresh_prefix) as b,
        httpx.Client(base_url=a.url, timeout=30) as ca,
        httpx.Client(base_url=b.url, timeout=30) as cb,
    ):
        assert ca.post("/v1/items", json={"item_id": "grad-1", "text": "a green lamp"}).status_code == 200
        proxy_before = cb.get("/v1/items/grad-1/embedding").json()
        assert proxy_before["source"] == "proxy"
        warm_new, added, graduated = vector(11), vector(12), vector(13)
        r = ca.put(
            "/v1/items:id-embeddings",
            json={
                "items": [
                    {"item_id": "warm-4", "embedding": warm_new},
                    {"item_id": "known-by-recommender", "embedding": added},
                    {"item_id": "grad-1", "embedding": graduated},
                    {"item_id": "warm-5", "embedding": package.item_emb[5].tolist()},
                    {"item_id": "bad-dim", "embedding": vector(14)[:3]},
                    {"item_id": "too-long", "embedding": vector(15, 1e6)},
                ],
                "add_unknown": True,
            },
        )
        assert r.status_code == 200, r.text
        out = r.json()
        assert [x["outcome"] for x in out["results"]] == ["updated", "added", "graduated", "unchanged", None, None]
        assert [x["status"] for x in out["results"]][-2:] == [422, 422]
        assert (out["stored"], out["unchanged"], out["failed"]) == (3, 1, 2)

        def served(client, item_id):
            r = client.get(f"/v1/items/{item_id}/embedding")
            return r.status_code, r.json().get("source"), r.json().get("embedding")

        settled(lambda: served(cb, "warm-4")[2] == pytest.approx(warm_new))  # b hears of it through the stream
        for client in (ca, cb):
            for item_id, want in (("warm-4", warm_new), ("known-by-recommender", added), ("grad-1", graduated)):
                status, source, emb = served(client, item_id)
                assert status == 200 and source == "id" and emb == pytest.approx(want, abs=1e-6), (item_id, source)
            assert served(client, "bad-dim")[0] == 404 and served(client, "too-long")[0] == 404  # nothing stored
            user = package.user_emb[2]
            ranked = client.post(
                "/v1/rank", json={"user_id": "2", "item_ids": ["warm-4", "known-by-recommender"]}
            ).json()
            scores = {s["item_id"]: (s["score"], s["source"]) for s in ranked["scores"]}
            assert scores["warm-4"] == (pytest.approx(float(user @ np.array(warm_new)), rel=1e-5), "id")
            assert scores["known-by-recommender"][1] == "id"
            top = client.post("/v1/recommendations", json={"user_embedding": added, "k": 3}).json()["items"]
            assert top[0]["item_id"] == "known-by-recommender" or top[0]["score"] >= float(np.dot(added, added)) - 1e-4

        # an item the service does not know is added only when asked
        r = ca.put("/v1/items:id-embeddings", json={"items": [{"item_id": "never-posted", "embedding": vector(17)}]})
        assert r.status_code == 200 and r.json()["results"][0]["status"] == 404 and r.json()["stored"] == 0
        assert served(ca, "never-posted")[0] == 404
        # a space named by the client must be the served one: else nothing is stored
        r = ca.put(
            "/v1/items:id-embeddings",
            json={"id_space": "ffffffffffffffff", "items": [{"item_id": "other-space", "embedding": vector(16)}]},
        )
        assert r.status_code == 409 and "ffffffffffffffff" in r.text
        assert served(ca, "other-space")[0] == 404
        assert ca.put("/v1/items:id-embeddings", json={"items": []}).status_code == 422

        # the command line sends a whole export in chunks
        ids = [f"cli-{n}" for n in range(7)] + ["warm-6"]
        matrix = np.random.default_rng(3).standard_normal((len(ids), ID_DIM)).astype(np.float32)
        pq.write_table(pa.table({"item_id": ids, "embedding": matrix.tolist()}), tmp_path / "items.parquet")
        run = subprocess.run(
            [
                sys.executable,
                "-m",
                "coldproxy_cli",
                "sync-ids",
                str(tmp_path / "items.parquet"),
                "--url",
                a.url,
                "--chunk",
                "3",
                "--add-unknown",
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert run.returncode == 0, run.stderr[-2000:]
        report = json.loads(run.stdout.strip().splitlines()[-1])
        assert report["stored"] == 8 and report["failed"] == 0 and report["vectors"] == 8
        assert served(ca, "warm-6")[2] == pytest.approx(matrix[7].tolist(), abs=1e-6)
        assert settled(lambda: served(cb, "cli-6")[2] == pytest.approx(matrix[6].tolist(), abs=1e-6))


@pytest.mark.parametrize("same_space", [True, False])
def test_a_rollout_carries_the_recommenders_vectors_only_within_one_space(
    tiny_package_dir, fresh_prefix, tmp_path, same_space
):
    second = retrain_tiny_package(tiny_package_dir, tmp_path / "second", seed=9, new_space=not same_space)
    v1, v2 = load_package(tiny_package_dir), load_package(second)
    assert (v1.id_fingerprint == v2.id_fingerprint) == same_space and v1.encoder_fingerprint == v2.encoder_fingerprint
    live_dir = tmp_path / "package"
    shutil.copytree(tiny_package_dir, live_dir)
    with live(live_dir, fresh_prefix, reembed_batch=4) as server, httpx.Client(base_url=server.url, timeout=30) as c:
        assert c.post("/v1/items", json={"item_id": "posted-1", "text": "a blue teapot"}).status_code == 200
        assert c.post("/v1/items", json={"item_id": "posted-2", "text": "a red kettle"}).status_code == 200
        given = {"synced-only": vector(21), "posted-2": vector(22)}
        r = c.put(
            "/v1/items:id-embeddings",
            json={"items": [{"item_id": i, "embedding": v} for i, v in given.items()], "add_unknown": True},
        )
        assert r.json()["stored"] == 2, r.text
        for name in ("proxy.onnx", "embeddings.npz", "manifest.json"):
            shutil.copy(second / name, live_dir / name)
        r = c.post("/v1/admin/reload")
        assert r.status_code == 200 and r.json()["package_version"] == v2.manifest.version, r.text
        report = r.json()["rollout"]["backfill"]
        assert report["id_space_changed"] is (not same_space)
        assert (report["id_vectors_carried"], report["id_vectors_dropped"]) == ((2, 0) if same_space else (0, 2))
        posted = c.get("/v1/items/posted-1/embedding").json()
        assert posted["package_version"] == v2.manifest.version and posted["source"] == "proxy"
        synced, graduated = c.get("/v1/items/synced-only/embedding"), c.get("/v1/items/posted-2/embedding").json()
        if same_space:  # the same recommender's vectors still hold
            assert synced.status_code == 200 and synced.json()["embedding"] == pytest.approx(given["synced-only"])
            assert graduated["source"] == "id" and graduated["embedding"] == pytest.approx(given["posted-2"])
        else:  # another space: content re-embedded, no old-space vector served
            assert synced.status_code == 404
            assert graduated["source"] == "proxy"
            assert not np.allclose(graduated["embedding"], given["posted-2"])


def test_the_recommenders_vectors_are_an_admin_write_and_ranking_by_vector_a_read(tiny_package_dir, fresh_prefix):
    """The recommender's vectors decide what every user is shown: a write key is not enough (issue 59)."""
    key, admin = "write-key-7654321", "admin-key-7654321"
    with (
        live(tiny_package_dir, fresh_prefix, api_keys=[key], admin_api_keys=[admin]) as server,
        httpx.Client(base_url=server.url) as c,
    ):
        ids = {"items": [{"item_id": "by-recommender", "embedding": vector(31)}], "add_unknown": True}
        assert c.put("/v1/items:id-embeddings", json=ids).status_code == 401
        assert c.put("/v1/items:id-embeddings", json=ids, headers={"X-API-Key": key}).status_code == 401
        assert c.put("/v1/items:id-embeddings", json=ids, headers={"X-API-Key": admin}).status_code == 200
        r = c.post("/v1/rank", json={"user_embedding": vector(32), "item_ids": ["by-recommender"]})
        assert r.status_code == 200 and r.json()["scores"][0]["source"] == "id"
    with (
        live(tiny_package_dir, fresh_prefix, api_keys=[key], auth_reads=True) as server,
        httpx.Client(base_url=server.url) as c,
    ):
        assert c.post("/v1/recommendations", json={"user_embedding": vector(32)}).status_code == 401
        assert (
            c.post("/v1/recommendations", json={"user_embedding": vector(32)}, headers={"X-API-Key": key}).status_code
            == 200
        )


def test_vectors_of_another_space_are_refused_whatever_their_label(tiny_package_dir, fresh_prefix):
    """Warm items whose vectors point elsewhere than the served ones (a retrain from scratch, a wrong export of the
    same dimension) get 409 and nothing is stored; norms past the largest warm item's fail alone (issue 59)."""
    package = load_package(tiny_package_dir)
    rng = np.random.default_rng(5)
    largest = float(np.linalg.norm(package.item_emb, axis=1).max())
    with live(tiny_package_dir, fresh_prefix) as server, httpx.Client(base_url=server.url, timeout=30) as c:
        ids = [f"warm-{n}" for n in range(4)]
        before = [c.get(f"/v1/items/{i}/embedding").json()["embedding"] for i in ids]
        served = np.asarray(before)
        other = np.empty_like(served)  # each pair of axes turned a quarter: a cosine of exactly 0 to the served
        other[:, 0::2], other[:, 1::2] = -served[:, 1::2], served[:, 0::2]
        body = {
            "items": [{"item_id": i, "embedding": v.tolist()} for i, v in zip(ids, other)],
            "id_space": package.id_fingerprint,
        }
        r = c.put("/v1/items:id-embeddings", json=body)
        assert r.status_code == 409 and "cosine" in r.json()["detail"], r.text
        assert [c.get(f"/v1/items/{i}/embedding").json()["embedding"] for i in ids] == before
        # the same recommender a little further on: taken
        drift = package.item_emb[:4] * 0.9 + 0.05 * rng.standard_normal((4, ID_DIM))
        body = {"items": [{"item_id": i, "embedding": v.tolist()} for i, v in zip(ids, drift)]}
        assert c.put("/v1/items:id-embeddings", json=body).json()["stored"] == 4
        too_long = package.item_emb[5] * (1.2 * largest / np.linalg.norm(package.item_emb[5]))
        r = c.put("/v1/items:id-embeddings", json={"items": [{"item_id": "warm-5", "embedding": too_long.tolist()}]})
        assert r.json()["results"][0]["status"] == 422 and "norm" in str(r.json()["results"][0]["detail"])


def test_an_overwrite_replaces_the_whole_record(tiny_package_dir, fresh_prefix, redis_client):
    """A graduated item POSTed again keeps no field of the record it replaced: no stale ``src: id`` serves its proxy
    as the recommender's vector on the next replica to load it (issue 59)."""
    version = load_package(tiny_package_dir).manifest.version
    key = f"{fresh_prefix}:{version}:item:regated-1"
    with live(tiny_package_dir, fresh_prefix) as server, httpx.Client(base_url=server.url, timeout=30) as c:
        assert c.post("/v1/items", json={"item_id": "regated-1", "text": "a yellow chair"}).status_code == 200
        r = c.put("/v1/items:id-embeddings", json={"items": [{"item_id": "regated-1", "embedding": vector(41, 0.1)}]})
        assert r.json()["results"][0]["outcome"] == "graduated", r.text
        assert redis_client.hget(key, "src") == b"id"
        r = c.post("/v1/items", json={"item_id": "regated-1", "text": "a yellow chair", "overwrite": True})
        assert r.status_code == 200 and redis_client.hget(key, "src") is None
    with live(tiny_package_dir, fresh_prefix) as server, httpx.Client(base_url=server.url, timeout=30) as c:
        assert c.get("/v1/items/regated-1/embedding").json()["source"] == "proxy"
