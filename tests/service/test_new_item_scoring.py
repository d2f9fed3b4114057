"""How the service scores a new item among warm ones, end to end (real uvicorn, HTTP, Redis, the exported package):
the warm-up path re-gating it with its interaction count and ID vector, the calibration putting it on the warm items'
scale for the users who clicked it, and users' default recommendations leaving out what they interacted with."""

import numpy as np
import pytest
import torch

from tests.service.test_service import post_item


def test_interaction_counts_re_gate_a_new_item_towards_its_id_embedding(client, trained, train_settings):
    """Warm-up path: count (+ the recommender's ID embedding) in, the gate's new mix out, served everywhere."""
    from models.items.checkpoint import load_experts

    r = post_item(client, "warmup-1", "A slow-burning heist thriller set in Lisbon.")
    assert r.status_code == 200, r.text
    first = r.json()
    assert first["expert_weights"]["id"] == 0.0 and first["interactions"] is None
    gate = load_experts(trained.settings.work_dir)[1]
    id_emb = trained.item_emb[trained.split.warm_items[0]]

    r = client.post("/v1/items/warmup-1/interactions", json={"count": 200, "id_embedding": id_emb.tolist()})
    assert r.status_code == 200, r.text
    body = r.json()
    w = body["expert_weights"]
    assert body["interactions"] == 200 and w["id"] > 0 and sum(w.values()) == pytest.approx(1.0, abs=1e-5)
    assert body["fusion_weights"] == pytest.approx(first["fusion_weights"], abs=1e-6) and body["modalities"] == ["text"]
    # the same mix in torch, from the experts' outputs the service kept
    with torch.no_grad():
        feats = torch.tensor([[float(np.log1p(200.0)), 1.0, 0.0]])
        want_w = gate.gate.weights(feats, torch.ones(1, 4))[0].numpy()  # with an ID embedding: the learned mix
    np.testing.assert_allclose(list(w.values()), want_w, atol=1e-5)
    new = np.array(body["embedding"], np.float32)
    assert not np.allclose(new, first["embedding"])
    got = client.get("/v1/items/warmup-1/embedding").json()
    np.testing.assert_array_equal(np.array(got["embedding"], np.float32), new)

    # count back to 0 and no ID embedding: the original cold mix again
    r = client.post("/v1/items/warmup-1/interactions", json={"count": 0})
    np.testing.assert_allclose(r.json()["embedding"], first["embedding"], atol=1e-5)

    warm_id = trained.dataset.item_ids[trained.split.warm_items[0]]
    bad = [
        ("/v1/items/warmup-1/interactions", {"count": -1}, 422),
        ("/v1/items/warmup-1/interactions", {"count": 3, "id_embedding": [1.0, 2.0]}, 422),
        # pushes to every top
        ("/v1/items/warmup-1/interactions", {"count": 3, "id_embedding": [100.0] * train_settings.dim}, 422),
        ("/v1/items/warmup-1/interactions", {"count": "many"}, 422),
        ("/v1/items/never-posted/interactions", {"count": 3}, 404),
        (f"/v1/items/{warm_id}/interactions", {"count": 3}, 409),
    ]
    for url, payload, status in bad:
        r = client.post(url, json=payload)
        assert r.status_code == status, (url, payload, r.text)
        assert r.json()["detail"]


def test_a_new_item_is_scored_on_the_warm_items_scale_for_the_users_who_clicked_it(client, trained):
    """Issue 16: a ranking that mixes new and warm candidates must be able to show the new item."""
    ds, split = trained.dataset, trained.split
    clicks = np.bincount(split.cold_test.items, minlength=ds.n_items)
    item = int(max((i for i in split.test_items if ds.item_images[i] is not None), key=lambda i: clicks[i]))
    item_id = f"scale-{ds.item_ids[item]}"
    assert post_item(client, item_id, ds.item_texts[item], ds.item_images[item].read_bytes()).status_code == 200
    info = client.get("/v1/model").json()
    assert info["calibration"]["scale"] > 0 and info["cold_boost"] == 0.0
    warm_ids = [ds.item_ids[i] for i in split.warm_items]
    inside, percentile = [], []
    for user in sorted(set(split.cold_test.users[split.cold_test.items == item].tolist()))[:30]:
        body = client.post("/v1/rank", json={"user_id": ds.user_ids[user], "item_ids": [item_id, *warm_ids]}).json()
        scores = {s["item_id"]: s["score"] for s in body["scores"]}
        warm = np.array([scores[i] for i in warm_ids])
        inside.append(warm.min() <= scores[item_id] <= warm.max())
        percentile.append(float((warm < scores[item_id]).mean()))
    # it competes: above most warm items for the users who clicked it. (On this 400-item slice the
    # validation picks the grid's largest scale, where half the positives are new items', so it often
    # lands above every warm item; on the full default model 82% of clickers see it inside the warm
    # range, bench/results/calibration.md.) Uncalibrated, the same item sat below the median here.
    assert len(inside) >= 3 and np.median(percentile) > 0.5 and np.mean(inside) > 0.0
    # the calibration was chosen on validation, the identity among the candidates: there it cannot lose
    assert info["calibration"]["val_all_ndcg20"] >= info["calibration"]["val_all_ndcg20_uncalibrated"]


def test_no_users_default_recommendations_hold_their_interactions(client, trained):
    """Every user of the package, at k=100: none of the items they interacted with in the data (any rating, trained
    on or held out), and every other item of the package until k is reached."""
    ds, every = trained.dataset, trained.dataset.seen()
    order = np.argsort(every.users, kind="stable")
    users, items = every.users[order], every.items[order]
    bounds = np.searchsorted(users, np.arange(len(ds.user_ids) + 1))
    checked = 0
    for u, user in enumerate(ds.user_ids):
        seen = {ds.item_ids[i] for i in items[bounds[u] : bounds[u + 1]]}
        r = client.get(f"/v1/users/{user}/recommendations", params={"k": 100})
        assert r.status_code == 200, user
        shown = [x["item_id"] for x in r.json()["items"]]
        # the package's other items at least (items posted by other tests are candidates too)
        assert len(shown) >= min(100, ds.n_items - len(seen)) and not seen & set(shown), user
        checked += 1
    assert checked == len(ds.user_ids)
