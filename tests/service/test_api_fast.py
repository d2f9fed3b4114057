"""Every item route and the error vocabulary over real HTTP and real Redis, on the tiny synthetic
model package (fast tier): the write path stores what it answers, reads and rankings use it, and
each bad input gets its own 4xx with a message."""

from __future__ import annotations

import base64
import io
import uuid

import numpy as np
from PIL import Image

from coldproxy.package import load_package


def _png(seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 255, (40, 30, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def _new_id() -> str:
    return f"new-{uuid.uuid4().hex[:10]}"


def test_a_posted_item_is_stored_served_and_ranked_on_the_warm_scale(tiny, tiny_package_dir, redis_client, tiny_server):
    package = load_package(tiny_package_dir)
    item_id = _new_id()
    r = tiny.post(
        "/v1/items",
        data={"item_id": item_id, "text": "a small red chair"},
        files={"image": ("chair.png", _png(1), "image/png")},
    )
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["package_version"] == package.manifest.version and out["modalities"] == ["text", "image"]
    assert abs(sum(out["fusion_weights"].values()) - 1.0) < 1e-5 and out["expert_weights"] is None
    emb = np.array(out["embedding"], np.float32)
    assert emb.shape == (package.manifest.dims.id_dim,) and np.isfinite(emb).all()
    key = f"{tiny_server.settings.redis_prefix}:{package.manifest.version}:item:{item_id}"
    assert np.array_equal(np.frombuffer(redis_client.hget(key, "emb"), np.float32), emb)  # Redis holds it
    got = tiny.get(f"/v1/items/{item_id}/embedding").json()
    assert got["source"] == "proxy" and np.allclose(got["embedding"], emb)
    ranked = tiny.post("/v1/rank", json={"user_id": "3", "item_ids": [item_id, "warm-0", "warm-1", "nope"]}).json()
    assert ranked["missing"] == ["nope"]
    scores = {s["item_id"]: s["score"] for s in ranked["scores"]}
    user = package.user_emb[package.user_ids.index("3")]
    assert abs(scores[item_id] - float(emb @ user)) < 1e-4
    assert abs(scores["warm-0"] - float(package.item_emb[0] @ user)) < 1e-4
    assert [s["score"] for s in ranked["scores"]] == sorted(scores.values(), reverse=True)
    top = tiny.get("/v1/users/3/recommendations", params={"k": 5}).json()["items"]
    assert len(top) == 5 and [t["score"] for t in top] == sorted((t["score"] for t in top), reverse=True)


def test_text_only_json_item_masks_the_image(tiny):
    r = tiny.post("/v1/items", json={"item_id": _new_id(), "text": "only words"})
    assert r.status_code == 200 and r.json()["modalities"] == ["text"]
    assert r.json()["fusion_weights"]["image"] == 0.0
    image_only = tiny.post("/v1/items", json={"item_id": _new_id(), "image_base64": base64.b64encode(_png(2)).decode()})
    assert image_only.status_code == 200 and image_only.json()["modalities"] == ["image"]


def test_batch_answers_each_item_on_its_own(tiny):
    good, taken = _new_id(), _new_id()
    assert tiny.post("/v1/items", json={"item_id": taken, "text": "first"}).status_code == 200
    r = tiny.post(
        "/v1/items:batch",
        json={
            "items": [
                {"item_id": good, "text": "fine"},
                {"item_id": taken, "text": "again"},
                {"item_id": "warm-2", "text": "x"},
                {"item_id": _new_id()},
                {"item_id": _new_id(), "image_base64": "%%%"},
            ]
        },
    )
    assert r.status_code == 200
    assert [x["status"] for x in r.json()["results"]] == [200, 409, 409, 422, 422] and r.json()["stored"] == 1


def test_each_bad_input_gets_its_own_status_and_message(tiny):
    item_id = _new_id()
    assert tiny.post("/v1/items", json={"item_id": item_id, "text": "once"}).status_code == 200
    cases = [
        (tiny.post("/v1/items", json={"item_id": item_id, "text": "twice"}), 409, "overwrite=true"),
        (tiny.post("/v1/items", json={"item_id": "warm-3", "text": "warm"}), 409, "warm"),
        (tiny.post("/v1/items", json={"item_id": _new_id()}), 422, "text, an image"),
        (tiny.post("/v1/items", json={"item_id": _new_id(), "image_base64": "not base64!"}), 422, "base64"),
        (tiny.post("/v1/items", content=b"x", headers={"content-type": "text/plain"}), 415, "multipart"),
        (tiny.post("/v1/items", json={"item_id": _new_id(), "text": "x" * 10_001}), 413, "longer"),
        (
            tiny.post(
                "/v1/items", data={"item_id": _new_id()}, files={"image": ("a.png", b"not an image", "image/png")}
            ),
            422,
            "image",
        ),
        (tiny.get("/v1/items/unknown-item/embedding"), 404, "unknown item"),
        (tiny.get("/v1/items/bad id!/embedding"), 422, "item_id must match"),
        (tiny.post("/v1/rank", json={"user_id": "no-such-user", "item_ids": ["warm-0"]}), 404, "unknown user"),
        (tiny.get("/v1/users/3/recommendations", params={"k": 100_000}), 422, "k must be at most"),
        (tiny.post(f"/v1/items/{item_id}/interactions", json={"count": 3}), 409, "no cold-aware gate"),
        (tiny.post("/v1/bundles", json={"bundle_id": "b", "item_ids": ["warm-0"]}), 404, "no bundle recommender"),
    ]
    for response, status, words in cases:
        assert response.status_code == status, (status, response.text)
        assert words in str(response.json()["detail"]), (words, response.text)
    assert tiny.post("/v1/items", json={"item_id": item_id, "text": "twice", "overwrite": True}).status_code == 200


def test_probes_model_and_metrics(tiny, tiny_package_dir):
    version = load_package(tiny_package_dir).manifest.version
    assert tiny.get("/healthz").json() == {"status": "alive"}
    assert tiny.get("/readyz").json() == {"status": "ready", "package_version": version, "bundle_version": version}
    model = tiny.get("/v1/model").json()
    assert (
        model["package_version"] == version and model["bundle_recommender"] is None and model["counts"]["users"] == 20
    )
    assert model["bundle_version"] == version  # the old name, deprecated, kept for one release
    assert model["warnings"] == [] and model["calibration"] is None
    metrics = tiny.get("/metrics").text
    assert 'coldproxy_requests_total{method="POST",route="/v1/items",status="200"}' in metrics
    assert 'coldproxy_stage_seconds_count{stage="proxy"}' in metrics


def test_cold_boost_scales_new_items_and_is_reported(tiny, tiny_package_dir, redis_prefix):
    from coldproxy.config import ServiceSettings
    from tests.conftest import REDIS_URL, LiveServer, _free_port

    settings = ServiceSettings(
        package_dir=tiny_package_dir,
        redis_url=REDIS_URL,
        redis_prefix=f"{redis_prefix}:boost",
        port=_free_port(),
        bundle_package_dir=None,
        cold_boost=1.5,
    )
    with LiveServer(settings) as boosted:
        import httpx

        with httpx.Client(base_url=boosted.url, timeout=30) as other:
            model = other.get("/v1/model").json()
            assert model["cold_boost"] == 1.5 and model["calibration"] is None
            plain = tiny.post("/v1/items", json={"item_id": _new_id(), "text": "a lamp"}).json()["embedding"]
            more = other.post("/v1/items", json={"item_id": _new_id(), "text": "a lamp"}).json()["embedding"]
    np.testing.assert_allclose(np.array(more), 2.5 * np.array(plain), rtol=1e-5, atol=1e-6)
    assert tiny.get("/v1/model").json()["cold_boost"] == 0.0


def test_the_old_version_names_are_answered_and_marked_deprecated(tiny):
    """``package_version`` names the model package; ``bundle_version`` (items) and ``model_version`` (bundles) are
    its old names: still in every answer for one release, and deprecated in the OpenAPI schema."""
    posted = tiny.post("/v1/items", json={"item_id": _new_id(), "text": "named twice"}).json()
    assert posted["package_version"] == posted["bundle_version"]
    schemas = tiny.get("/openapi.json").json()["components"]["schemas"]
    for name, old in (
        ("ItemOut", "bundle_version"),
        ("RankOut", "bundle_version"),
        ("ModelOut", "bundle_version"),
        ("BundleOut", "model_version"),
        ("BundleRecommendOut", "model_version"),
    ):
        props = schemas[name]["properties"]
        assert props[old].get("deprecated") is True and "package_version" in schemas[name]["required"], name
