"""A package aligned to a team's own ID space, end to end (issue 38): given vectors (a tiny synthetic space over
MovieLens' 400 most popular movies) -> ``train`` -> export -> a real server on real Redis. The served warm vectors
are the given ones, a POSTed movie ranks for a user vector the package never saw, and the manifest and /v1/model
carry the space's fingerprint. Both modes: item and user vectors (dot, Parquet), item vectors only (cosine, .npy)."""

from __future__ import annotations

import httpx
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from coldproxy.config import ServiceSettings
from coldproxy.id_space import read_vectors, space_fingerprint
from coldproxy.package import load_package
from models.data import load_dataset
from tests.conftest import REDIS_URL, LiveServer, _free_port

DIM = 16
pytestmark = pytest.mark.slow


def make_space(dirpath, train_settings, with_users: bool):
    """Item vectors for 360 of the 400 movies (the other 40 stay new to the recommender), user vectors for every
    user who rated one and one user with no ratings; a low-rank structure, so training has something to learn."""
    ds = load_dataset(train_settings)
    rng = np.random.default_rng(5)
    items = rng.permutation(ds.n_items)[:360]
    genre = rng.standard_normal((8, DIM)).astype(np.float32)
    item_vec = (genre[rng.integers(0, 8, len(items))] + 0.3 * rng.standard_normal((len(items), DIM))).astype(np.float32)
    dirpath.mkdir(parents=True, exist_ok=True)
    item_ids = [ds.item_ids[i] for i in items]
    if with_users:
        pq.write_table(pa.table({"item_id": item_ids, "embedding": item_vec.tolist()}), dirpath / "items.parquet")
        users = ds.user_ids + ["signed-up-today"]
        user_vec = rng.standard_normal((len(users), DIM)).astype(np.float32)
        pq.write_table(pa.table({"user_id": users, "embedding": user_vec.tolist()}), dirpath / "users.parquet")
        return dirpath / "items.parquet", dirpath / "users.parquet"
    np.save(dirpath / "items.npy", item_vec)
    (dirpath / "items.ids.txt").write_text("\n".join(item_ids) + "\n")
    return dirpath / "items.npy", None


@pytest.mark.parametrize("mode", ["items+users, dot", "items only, cosine"])
def test_a_package_serves_the_given_space(mode, train_settings, tmp_path, redis_prefix):
    from export.encoders import encoder_graphs
    from export.package import build_package
    from models.items.checkpoint import save_checkpoint
    from models.items.train import train

    with_users = mode.startswith("items+users")
    score = "dot" if with_users else "cosine"
    items_file, users_file = make_space(tmp_path / "space", train_settings, with_users)
    s = train_settings.model_copy(
        update={
            "item_embeddings": items_file,
            "user_embeddings": users_file,
            "score_function": score,
            "generator_seeds": 1,
            "proxy_epochs": 3,
            "diffusion_epochs": 5,
            "gate_epochs": 2,
            "select_modalities": False,
            "work_dir": tmp_path / "train",
            "package_dir": tmp_path / "package",
        }
    )
    result = train(s, encoder_graphs, progress=False)
    assert result.metrics["id_model"]["type"] == "given"
    assert ("calibration" in result.metrics) == with_users  # nothing to calibrate against without users
    save_checkpoint(result, s.work_dir)
    package = load_package(build_package(s))

    given = read_vectors(items_file, "item_id")
    space = package.manifest.id_space
    assert space.source == "given" and space.score == score and space.dim == DIM
    assert space.fingerprint == package.id_fingerprint == space_fingerprint(given, score)
    assert space.item_file == items_file.name and space.user_file == (users_file.name if users_file else None)
    assert sorted(package.item_ids) == sorted(given.ids)  # every item with a vector (and content) is served as warm
    assert len(package.proxy_ids) == 40  # and the movies without one, by their proxy
    # the refit on all the data uses every vector: each vectored item is warm, every interaction with one trains
    from models.items.refit import refit

    again = refit(s, result.metrics, encoder_graphs, progress=False)
    assert sorted(again.dataset.item_ids[i] for i in again.split.warm_items) == sorted(given.ids)
    assert len(again.split.train) == int(np.isin(again.dataset.items, again.split.warm_items).sum())
    assert len(again.split.train) > len(result.split.train) and len(again.package_proxies()[0]) == 40
    assert package.user_ids == (read_vectors(users_file, "user_id").ids if with_users else [])
    # random user vectors predict nothing: training says so instead of serving it quietly
    assert (
        "not clearly better than popularity" in (result.metrics["id_model"]["diagnostics"]["warning"] or "")
    ) == with_users

    settings = ServiceSettings(
        package_dir=s.package_dir,
        redis_url=REDIS_URL,
        redis_prefix=f"{redis_prefix}:{score}",
        port=_free_port(),
        bundle_package_dir=None,
    )
    with LiveServer(settings) as server, httpx.Client(base_url=server.url, timeout=30) as c:
        model = c.get("/v1/model").json()
        assert model["id_fingerprint"] == space.fingerprint and model["id_space"]["source"] == "given"
        assert model["id_space"]["report"]["items_without_vector"] == 40  # the movies new to the recommender
        for k in (0, 100, 359):  # the served warm vectors are the given ones (unit-length in a cosine space)
            want = given.matrix[k] / (np.linalg.norm(given.matrix[k]) if score == "cosine" else 1.0)
            got = c.get(f"/v1/items/{given.ids[k]}/embedding").json()
            assert got["source"] == "id" and np.allclose(got["embedding"], want, atol=1e-6), given.ids[k]

        new = c.post(
            "/v1/items",
            json={"item_id": "brand-new-film", "text": "A heist thriller set in Lisbon. Genres: Crime, Thriller."},
        )
        assert new.status_code == 200, new.text
        emb = np.array(new.json()["embedding"], np.float32)
        if score == "cosine":
            assert np.linalg.norm(emb) == pytest.approx(1.0, abs=1e-4)
        stranger = np.random.default_rng(99).standard_normal(DIM).astype(np.float32)  # no user of the package
        r = c.post("/v1/rank", json={"user_embedding": stranger.tolist(), "item_ids": ["brand-new-film", given.ids[0]]})
        assert r.status_code == 200, r.text
        scores = {x["item_id"]: x["score"] for x in r.json()["scores"]}
        unit = stranger / np.linalg.norm(stranger) if score == "cosine" else stranger
        assert scores["brand-new-film"] == pytest.approx(float(unit @ emb), rel=1e-4, abs=1e-5)
        if with_users:
            assert c.post("/v1/recommendations", json={"user_id": "signed-up-today", "k": 5}).status_code == 200
            # the recommender learns the new film: it graduates to its vector; interactions sent later re-gate it
            learnt = given.matrix[:2].mean(0)
            out = c.put(
                "/v1/items:id-embeddings", json={"items": [{"item_id": "brand-new-film", "embedding": learnt.tolist()}]}
            ).json()
            assert out["results"][0]["outcome"] == "graduated"
            got = c.get("/v1/items/brand-new-film/embedding").json()
            assert got["source"] == "id" and np.allclose(got["embedding"], learnt, atol=1e-6)
            regated = c.post("/v1/items/brand-new-film/interactions", json={"count": 3})
            assert regated.status_code == 200, regated.text
            got = c.get("/v1/items/brand-new-film/embedding").json()
            assert got["source"] == "proxy" and np.allclose(got["embedding"], regated.json()["embedding"], atol=1e-6)
            assert regated.json()["expert_weights"]["id"] == 0  # a count alone re-gates on content, as documented
        else:
            assert c.post("/v1/rank", json={"user_id": "1", "item_ids": ["brand-new-film"]}).status_code == 404
            # a cosine space's vector is taken at any finite length and made unit-length, on the warm-up path too
            long = (5.0 * given.matrix[0] / np.linalg.norm(given.matrix[0])).tolist()
            r = c.post("/v1/items/brand-new-film/interactions", json={"count": 50, "id_embedding": long})
            assert r.status_code == 200, r.text
            assert np.linalg.norm(r.json()["embedding"]) == pytest.approx(1.0, abs=1e-4)
