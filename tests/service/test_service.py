"""The service end to end: real uvicorn, real HTTP (httpx), real Redis, the exported model package."""

import base64
import gc
import io
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from PIL import Image

from coldproxy.anchors import AnchorIndex, content_vectors
from coldproxy.config import ServiceSettings
from coldproxy.preprocess import load_image_file
from models.encoders import ImageEncoder, TextEncoder, tokenizer
from models.items.calibration import Calibration
from models.items.checkpoint import load_experts, load_proxy
from models.items.train import check_selection
from models.samplers import sample


@pytest.fixture(scope="module")
def held_out(trained):
    """A test-cold movie (never seen in training) with a poster and a text; the package serves it by its proxy, so it
    is posted as a new item under another ID."""
    ds = trained.dataset
    i = next(int(i) for i in trained.split.test_items if ds.item_images[i] is not None)
    return {
        "item_id": f"posted-{ds.item_ids[i]}",
        "package_id": ds.item_ids[i],
        "text": ds.item_texts[i],
        "poster": ds.item_images[i],
    }


@torch.no_grad()
def torch_proxy(work_dir, text, poster):
    """The same computation in torch, independently of ONNX Runtime: proxy generator, then (when the
    package has them) anchor -> DPM-Solver++ -> the served gate over (ID, proxy, diffusion, anchor), then the
    calibration to the warm items' scale (applied after the mix here, inside the graphs in the package). Returns
    (served, fusion α, expert weights)."""
    t = tokenizer(128)([text])
    tf, tl = TextEncoder()(torch.from_numpy(t["input_ids"]), torch.from_numpy(t["attention_mask"]))
    imf, ims = ImageEncoder()(torch.from_numpy(load_image_file(poster)[None]))
    out = load_proxy(work_dir)(tf, imf, tl, ims, torch.ones(1, 2))
    proxy, alpha = out["proxy"][0].numpy(), out["alpha"][0].numpy()
    experts, calibration = load_experts(work_dir), Calibration.load(work_dir)
    calibrate = (lambda v: v) if calibration is None else calibration.apply
    if experts is None:
        return calibrate(proxy), alpha, None
    den, gate, kw, anchor_n = experts
    z = np.load(Path(work_dir) / "embeddings.npz")
    index = AnchorIndex(content_vectors(z["item_text"], z["item_image"], z["item_mask"]), z["item_emb"], anchor_n)
    anchor = index.anchors(content_vectors(tf.detach().numpy(), imf.detach().numpy(), np.ones((1, 2), np.float32)))
    diffusion = sample(den, anchor, proxy[None], **kw)
    with torch.no_grad():
        emb, w = gate(
            torch.tensor([[0.0, 1.0, 1.0]]),
            torch.tensor([[0.0, 1.0, 1.0, 1.0]]),
            torch.zeros(1, len(proxy)),
            torch.from_numpy(proxy[None]),
            torch.from_numpy(diffusion),
            torch.from_numpy(anchor.astype(np.float32)),
        )
    return calibrate(emb[0].numpy()), alpha, w[0].numpy()


def post_item(client, item_id, text=None, image=None, **extra):
    files = {"image": ("poster.jpg", image, "image/jpeg")} if image is not None else None
    data = {"item_id": item_id, **({"text": text} if text is not None else {}), **extra}
    return client.post("/v1/items", data=data, files=files)


def test_health_and_readiness(client, package_dir, train_settings):
    assert client.get("/healthz").json() == {"status": "alive"}
    r = client.get("/readyz")
    assert r.status_code == 200 and r.json()["status"] == "ready"
    m = client.get("/v1/model").json()
    assert m["package_version"] == r.json()["package_version"] and m["dims"]["id_dim"] == train_settings.dim
    assert m["providers"][-1] == "CPUExecutionProvider" and "cold" in m["test_metrics"]
    sel = m["selection"]  # what new items are served and why: every candidate's validation score and margin
    assert sel["served"] in ("gate", "proxy", "diffusion", "anchor") and set(sel["margins"]) == {
        "anchor",
        "diffusion",
        "gate",
    }
    check_selection(sel)
    # COLDPROXY_GC_FREEZE (default on): the loaded state sits in the collector's permanent generation
    assert gc.get_freeze_count() > 10_000


def test_post_get_rank_recommend_held_out_movie(client, held_out, train_settings, trained, redis_client, server):
    r = post_item(client, held_out["item_id"], held_out["text"], held_out["poster"].read_bytes())
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["modalities"] == ["text", "image"] and body["source"] == "proxy"
    posted = np.array(body["embedding"], dtype=np.float32)
    want, alpha, expert_w = torch_proxy(train_settings.work_dir, held_out["text"], held_out["poster"])
    np.testing.assert_allclose(posted, want, atol=1e-4)
    ew = body["expert_weights"]  # the test package has the diffusion expert and the gate
    assert (
        list(ew) == ["id", "proxy", "diffusion", "anchor"]
        and ew["id"] == 0.0
        and sum(ew.values()) == pytest.approx(1.0, abs=1e-5)
    )
    np.testing.assert_allclose(list(ew.values()), expert_w, atol=1e-5)
    weights = body["fusion_weights"]
    np.testing.assert_allclose([weights["text"], weights["image"]], alpha, atol=1e-5)
    assert weights["text"] + weights["image"] == pytest.approx(1.0, abs=1e-5)
    if load_proxy(train_settings.work_dir).cfg.modalities == (1, 1):
        assert min(weights.values()) > 0
    else:  # a single-modality generator won on validation: it alone serves an item that has its modality
        assert sorted(weights.values()) == [0.0, 1.0]

    got = client.get(f"/v1/items/{held_out['item_id']}/embedding").json()
    assert got["source"] == "proxy" and got["package_version"] == body["package_version"]
    np.testing.assert_array_equal(np.array(got["embedding"], dtype=np.float32), posted)
    # the package serves the held-out movie itself by the proxy training computed for it: what a POST computes
    known = client.get(f"/v1/items/{held_out['package_id']}/embedding").json()
    assert known["source"] == "proxy"
    np.testing.assert_allclose(np.array(known["embedding"], dtype=np.float32), posted, atol=1e-4)
    assert post_item(client, held_out["package_id"], held_out["text"]).status_code == 409
    # it really is in Redis, under a key that carries the package version
    key = f"{server.settings.redis_prefix}:{body['package_version']}:item:{held_out['item_id']}"
    np.testing.assert_array_equal(np.frombuffer(redis_client.hget(key, "emb"), dtype=np.float32), posted)

    ds, warm = trained.dataset, trained.split.warm_items
    user = ds.user_ids[0]
    candidates = [held_out["item_id"]] + [ds.item_ids[i] for i in warm[:20]] + ["never-posted"]
    ranked = client.post("/v1/rank", json={"user_id": user, "item_ids": candidates}).json()
    scores = {s["item_id"]: s["score"] for s in ranked["scores"]}
    assert held_out["item_id"] in scores and ranked["missing"] == ["never-posted"]
    values = [s["score"] for s in ranked["scores"]]
    assert values == sorted(values, reverse=True)
    u = trained.user_emb[0]
    assert scores[held_out["item_id"]] == pytest.approx(float(posted @ u), rel=1e-4, abs=1e-4)

    recs = client.get(f"/v1/users/{user}/recommendations", params={"k": 5}).json()["items"]
    assert len(recs) == 5 and [r["score"] for r in recs] == sorted([r["score"] for r in recs], reverse=True)
    # the FAISS index holds the new item beside the warm ones, scored by the same dot product
    everything = client.get(f"/v1/users/{user}/recommendations", params={"k": 1000, "exclude_seen": "false"}).json()
    everything = everything["items"]
    assert len(everything) > len(trained.split.warm_items)  # warm items + at least this cold one
    # by default, none of what the user interacted with in the data, any rating (issues 44, 55)
    every = ds.seen()
    seen = {ds.item_ids[i] for i in every.items[every.users == 0]}
    assert len(seen) > (trained.split.train.users == 0).sum()
    shown = client.get(f"/v1/users/{user}/recommendations", params={"k": 1000}).json()["items"]
    assert seen and not seen & {r["item_id"] for r in shown}
    assert {r["item_id"] for r in shown} == {r["item_id"] for r in everything} - seen
    hit = [r for r in everything if r["item_id"] == held_out["item_id"]]
    assert len(hit) == 1 and hit[0]["source"] == "proxy"
    assert hit[0]["score"] == pytest.approx(float(posted @ u), rel=1e-4, abs=1e-4)


def test_json_body_with_base64_image_and_single_modalities(client, movielens_dir):
    img = base64.b64encode((movielens_dir / "posters" / "3.jpg").read_bytes()).decode()
    r = client.post("/v1/items", json={"item_id": "json-image-only", "image_base64": img})
    assert r.status_code == 200, r.text
    assert r.json()["modalities"] == ["image"]
    assert r.json()["fusion_weights"] == {"text": 0.0, "image": pytest.approx(1.0, abs=1e-6)}
    r = post_item(client, "text-only-item", "A quiet drama about a lighthouse keeper.")
    assert r.status_code == 200 and r.json()["modalities"] == ["text"]
    assert r.json()["fusion_weights"] == {"text": pytest.approx(1.0, abs=1e-6), "image": 0.0}
    assert np.isfinite(r.json()["embedding"]).all()


def test_reposting_is_explicit(client, movielens_dir):
    poster = (movielens_dir / "posters" / "5.jpg").read_bytes()
    first = post_item(client, "dup-item", "first text", poster)
    assert first.status_code == 200
    again = post_item(client, "dup-item", "other text", poster)
    assert again.status_code == 409 and "overwrite" in again.json()["detail"]
    kept = client.get("/v1/items/dup-item/embedding").json()["embedding"]
    assert kept == first.json()["embedding"]
    replaced = post_item(client, "dup-item", "other text", poster, overwrite="true")
    assert replaced.status_code == 200
    assert client.get("/v1/items/dup-item/embedding").json()["embedding"] == replaced.json()["embedding"]


def test_warm_item_is_served_from_id_model(client, trained):
    warm_id = trained.dataset.item_ids[trained.split.warm_items[0]]
    got = client.get(f"/v1/items/{warm_id}/embedding").json()
    assert got["source"] == "id"
    np.testing.assert_allclose(got["embedding"], trained.item_emb[trained.split.warm_items[0]], atol=1e-6)
    assert post_item(client, warm_id, "some text").status_code == 409


@pytest.mark.parametrize(
    "kwargs, status",
    [
        ({"item_id": "no-content"}, 422),
        ({"item_id": "blank-text", "text": "   "}, 422),
        ({"item_id": "not-an-image", "image": b"this is not a jpeg"}, 422),
        ({"item_id": "truncated", "image": "TRUNCATED"}, 422),
        ({"item_id": "bad id with spaces", "text": "x"}, 422),
        ({"item_id": "x" * 129, "text": "x"}, 422),
        ({"item_id": "huge-text", "text": "y" * 10_001}, 413),
    ],
)
def test_bad_items_get_clear_4xx(client, movielens_dir, kwargs, status):
    if kwargs.get("image") == "TRUNCATED":
        kwargs["image"] = (movielens_dir / "posters" / "1.jpg").read_bytes()[:2000]
    r = post_item(client, **kwargs)
    assert r.status_code == status, r.text
    assert isinstance(r.json()["detail"], (str, list)) and r.json()["detail"]
    assert client.get("/healthz").status_code == 200


def test_wrong_content_type_and_bad_json(client):
    assert client.post("/v1/items", content=b"item_id=a", headers={"content-type": "text/plain"}).status_code == 415
    assert (
        client.post("/v1/items", content=b"{not json", headers={"content-type": "application/json"}).status_code == 422
    )
    assert client.post("/v1/items", json={"item_id": "b64", "image_base64": "%%%"}).status_code == 422


def test_decompression_bomb_is_refused(client):
    buf = io.BytesIO()
    Image.new("L", (10_000, 5_000)).save(buf, format="PNG")  # 50 Mpx, a few KB compressed
    r = post_item(client, "bomb", image=buf.getvalue())
    assert r.status_code == 422 and "pixels" in r.json()["detail"]


def test_unknowns_are_404(client):
    assert client.get("/v1/items/never-seen/embedding").status_code == 404
    assert client.post("/v1/rank", json={"user_id": "no-such-user", "item_ids": ["1"]}).status_code == 404
    assert client.get("/v1/users/no-such-user/recommendations").status_code == 404
    assert client.post("/v1/rank", json={"user_id": "1", "item_ids": []}).status_code == 422
    assert client.get("/v1/users/1/recommendations", params={"k": 0}).status_code == 422


def test_metrics_expose_routes_and_stages(client):
    text = client.get("/metrics").text
    assert 'coldproxy_requests_total{method="POST",route="/v1/items",status="200"}' in text
    for stage in ("decode", "queue", "image_encoder", "tokenise", "text_encoder", "proxy", "store", "index"):
        assert f'coldproxy_stage_seconds_count{{stage="{stage}"}}' in text
    assert "coldproxy_batch_queue_depth" in text


def test_request_metrics_count_each_answer_by_route_and_status(client):
    def count(line: str) -> float:
        found = [x for x in client.get("/metrics").text.splitlines() if x.startswith(line + " ")]
        return float(found[0].split()[-1]) if found else 0.0

    rank_404 = 'coldproxy_requests_total{method="POST",route="/v1/rank",status="404"}'
    rank_413 = 'coldproxy_requests_total{method="POST",route="/v1/rank",status="413"}'
    lost = 'coldproxy_requests_total{method="GET",route="unmatched",status="404"}'
    timed = 'coldproxy_request_seconds_count{method="POST",route="/v1/rank"}'
    before = [count(x) for x in (rank_404, rank_413, lost, timed)]
    assert client.post("/v1/rank", json={"user_id": "no-such-user", "item_ids": ["1"]}).status_code == 404
    too_big = b" " * (ServiceSettings().max_request_bytes + 1)
    assert client.post("/v1/rank", content=too_big, headers={"content-type": "application/json"}).status_code == 413
    assert client.get("/no/such/route").status_code == 404
    assert [count(x) for x in (rank_404, rank_413, lost, timed)] == [b + d for b, d in zip(before, (1, 1, 1, 2))]


def test_api_key_guards_writes(replica):
    with replica(api_key="s3cret-key") as live, httpx.Client(base_url=live.url, timeout=30) as c:
        assert c.post("/v1/items", data={"item_id": "k1", "text": "t"}).status_code == 401
        assert (
            c.post("/v1/items", data={"item_id": "k1", "text": "t"}, headers={"X-API-Key": "wrong"}).status_code == 401
        )
        assert (
            c.post("/v1/items", data={"item_id": "k1", "text": "t"}, headers={"X-API-Key": "s3cret-key"}).status_code
            == 200
        )
        assert c.get("/v1/items/k1/embedding").status_code == 200  # reads stay open


def test_service_does_not_import_torch():
    """DESIGN: the service reads only the model package and never imports torch at serving time."""
    import subprocess
    import sys

    code = "import sys, service.app; sys.exit(1 if 'torch' in sys.modules else 0)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_batch_ingestion_stores_good_items_and_reports_bad_ones_each(client, movielens_dir, trained, train_settings):
    posters = [(movielens_dir / "posters" / f"{i}.jpg").read_bytes() for i in (6, 7)]
    b64 = [base64.b64encode(p).decode() for p in posters]
    warm_id = trained.dataset.item_ids[trained.split.warm_items[0]]
    items = [
        {"item_id": "batch-1", "text": "A space opera about a lost fleet.", "image_base64": b64[0]},
        {"item_id": "batch-2", "image_base64": b64[1]},
        {"item_id": "batch-3", "text": "A courtroom drama in a small town."},
        {"item_id": "batch-bad-image", "text": "x", "image_base64": base64.b64encode(b"not an image").decode()},
        {"item_id": "batch-empty"},
        {"item_id": warm_id, "text": "warm"},
        {"item_id": "batch-1", "text": "the same ID twice in one batch"},
    ]
    r = client.post("/v1/items:batch", json={"items": items})
    assert r.status_code == 200, r.text
    res = r.json()["results"]
    assert [x["item_id"] for x in res] == [it["item_id"] for it in items]
    assert [x["status"] for x in res[1:6]] == [200, 200, 422, 422, 409]
    assert sorted([res[0]["status"], res[6]["status"]]) == [200, 409]  # one of the two batch-1 writes wins, never both
    assert r.json()["stored"] == 3
    assert res[1]["item"]["modalities"] == ["image"] and res[2]["item"]["fusion_weights"]["image"] == 0.0
    # the batched graphs give what the one-item endpoint gives for the same item
    single = post_item(client, "batch-1-single", "A space opera about a lost fleet.", posters[0]).json()
    winner = res[0] if res[0]["status"] == 200 else res[6]
    if winner is res[0]:
        np.testing.assert_allclose(single["embedding"], res[0]["item"]["embedding"], atol=1e-5)
    for x in res:
        if x["status"] == 200:
            got = client.get(f"/v1/items/{x['item_id']}/embedding").json()
            np.testing.assert_array_equal(got["embedding"], x["item"]["embedding"])
    assert client.post("/v1/items:batch", json={"items": []}).status_code == 422
    assert (
        client.post(
            "/v1/items:batch", json={"items": [{"item_id": f"b{i}", "text": "t"} for i in range(65)]}
        ).status_code
        == 413
    )
    assert client.post("/v1/items:batch", content=b"x", headers={"content-type": "text/plain"}).status_code == 415
