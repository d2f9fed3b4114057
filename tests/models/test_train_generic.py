"""`coldproxy train --format generic` trains end to end on a user-supplied dataset directory."""

import csv
import json

import numpy as np

from coldproxy_cli.commands import main as cli_main
from models.data import load_movielens


def test_cli_trains_on_generic_format(tmp_path, movielens_dir, train_settings, trained, monkeypatch, capsys):
    ml = load_movielens(movielens_dir).most_popular(120)
    data = tmp_path / "data"
    data.mkdir()
    with (data / "items.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["item_id", "text", "image"])
        for i, (iid, text, img) in enumerate(zip(ml.item_ids, ml.item_texts, ml.item_images)):
            # every 3rd item text-only, every 5th image-only: both missing-modality paths are exercised
            text_only, image_only = i % 3 == 0 or img is None, i % 5 == 0 and i % 3 != 0 and img is not None
            w.writerow([f"sku-{iid}", "" if image_only else text, "" if text_only else str(img)])
    with (data / "interactions.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["user_id", "item_id", "timestamp"])
        for u, i in zip(ml.users, ml.items):
            w.writerow([f"user-{ml.user_ids[u]}", f"sku-{ml.item_ids[i]}", 0])
    # share the session's cached encoder graphs; keep the run short
    monkeypatch.setenv("COLDPROXY_CACHE_DIR", str(train_settings.cache_dir))
    monkeypatch.setenv("COLDPROXY_ID_EPOCHS", "5")
    monkeypatch.setenv("COLDPROXY_PROXY_EPOCHS", "2")
    monkeypatch.setenv("COLDPROXY_SELECT_MODALITIES", "true")  # the single-modality generators too (default off)
    monkeypatch.setenv("COLDPROXY_GENERATOR_SEEDS", "2")  # and every candidate generator from a second seed
    work = tmp_path / "work"
    cli_main(["train", "--format", "generic", "--data", str(data), "--work-dir", str(work)])
    assert "estimated training time ~" in capsys.readouterr().err  # said before it starts (models/cost.py)
    z = np.load(work / "embeddings.npz")
    assert z["item_ids"][0].startswith("sku-") and z["user_ids"][0].startswith("user-")
    assert z["item_emb"].shape[1] == train_settings.dim and np.isfinite(z["item_emb"]).all()
    mask = z["item_mask"]
    assert (mask.sum(1) >= 1).all() and (mask[:, 0] == 0).any() and (mask[:, 1] == 0).any()
    assert (work / "metrics.json").exists() and (work / "proxy.pt").exists()
    metrics = json.loads((work / "metrics.json").read_text())
    assert {"features", "id_model", "proxy", "diffusion+gate", "calibration", "evaluation"} <= set(metrics["seconds"])
    selection = metrics["selection"]
    assert {"generator:both", "generator:text", "generator:image"} <= set(selection["validation"])  # seeds averaged
    weights = selection["generator_weights"]  # each modality's weight shared equally by its two seeds
    assert all(weights[n] == weights[n.partition("#")[0] if "#" in n else n + "#2"] for n in weights)
    assert set(selection["fusion_temperature"]) == {"both", "both#2"}
    assert all(str(t["chosen"]) in t["validation"] for t in selection["fusion_temperature"].values())  # JSON keys
