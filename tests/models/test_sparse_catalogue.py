"""Issue 21: on a sparse catalogue of near-duplicate variants (generated: ~2,500 articles in colour
variants, ~8 purchases per user) the default package must not lose to its parts or to the simplest
baseline. Trained with the default settings on 3 seeds; judged on the test split, which training never
saw: the default beats content-kNN by 10% and the image-only generator, and training says what it
chose on validation (the ID-model fallback and the served expert) and why."""

from __future__ import annotations

import numpy as np
import pytest

from coldproxy.config import TrainSettings
from models.evaluate import evaluate_split
from models.items.baselines import knn_embeddings
from models.items.proxy_training import predict
from models.items.train import fit_generator
from models.synthetic_catalogue import CatalogueSpec, generate

SEEDS = (0, 1, 2)
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory):
    root = tmp_path_factory.mktemp("sparse")
    return root, generate(root / "catalogue", CatalogueSpec(seed=0))


def train_seeds(catalogue, **overrides):
    from export.encoders import encoder_graphs
    from models.items.train import train

    root, data = catalogue
    runs = []
    for seed in SEEDS:
        s = TrainSettings(data_dir=data, data_format="generic", seed=seed, cache_dir=root / "cache",
                          work_dir=root / f"train{seed}", package_dir=root / f"package{seed}", **overrides)
        runs.append(train(s, encoder_graphs, progress=False))
    return runs


@pytest.fixture(scope="module")
def sparse_runs(catalogue):
    return train_seeds(catalogue)


@pytest.fixture(scope="module")
def selected_runs(catalogue):
    """With the single-modality generators as candidates, chosen on validation items held out from
    early stopping (the settings README recommends for such a catalogue)."""
    return train_seeds(catalogue, select_modalities=True, selection_holdout=0.5)


def cold_recall(result, emb) -> float:
    return evaluate_split(result.user_emb, emb, result.split)["cold"]["recall@20"]


def rows(result) -> dict[str, float]:
    f, sp, I = result.features, result.split, result.item_emb
    cold = np.concatenate([sp.val_items, sp.test_items])
    out = {"default": cold_recall(result, result.served_item_emb()),
           "content-kNN": cold_recall(result, knn_embeddings(f, I, sp.warm_items, cold, neighbours=5))}
    for m in ("text", "image") if result.settings.select_modalities else ("image",):  # fitted by training, or here
        model = result.generators.get(m)
        if model is None:
            s = result.settings.model_copy(update={"proxy_modalities": m})
            model = fit_generator(f, sp, result.user_emb, I, s, progress=False)[0]
        emb = I.copy()
        emb[cold] = predict(model, f, cold)
        out[f"{m} only"] = cold_recall(result, emb)
    return out


def test_the_default_beats_knn_by_ten_percent_and_the_image_only_generator_on_the_test_split(sparse_runs):
    """Over the 3 seeds the default beats content-kNN by 10% and, on every seed, kNN and the image-only
    generator. (The text-only generator is not asserted: with COLDPROXY_SELECT_MODALITIES off, the
    default, the default ties it on two seeds and trails it by 0.026 cold Recall@20 on one:
    bench/results/quality_sparse_catalogue.md.)"""
    table = [rows(r) for r in sparse_runs]
    for seed, row in zip(SEEDS, table):
        assert row["default"] >= max(row["content-kNN"], row["image only"]), (seed, row)
    mean = {k: float(np.mean([row[k] for row in table])) for k in table[0]}
    assert mean["default"] >= 1.10 * mean["content-kNN"], mean


def test_with_held_out_selection_the_served_model_beats_knn_and_both_single_modalities(selected_runs):
    """Measured at one thread per seed (bench/results/quality_sparse_catalogue_holdout_selection.md):
    cold Recall@20 0.298 against text-only 0.281, image-only 0.150, kNN 0.222, and 0.271 with the
    default settings. Every seed: above kNN and image-only; over the seeds: above text-only and 1.10x kNN.
    On validation the served choice is at least every candidate, the single-modality ones included."""
    table = [rows(r) for r in selected_runs]
    for seed, row in zip(SEEDS, table):
        assert row["default"] >= max(row["content-kNN"], row["image only"]), (seed, row)
    mean = {k: float(np.mean([row[k] for row in table])) for k in table[0]}
    assert mean["default"] >= max(1.10 * mean["content-kNN"], mean["text only"]), mean
    for r in selected_runs:
        sel = r.metrics["selection"]
        assert {"generator:both", "generator:text", "generator:image"} <= set(sel["validation"])
        assert sel["chosen_on"].endswith("held out from early stopping")
        assert sel["validation"][sel["served"]] == max(sel["validation"].values())


def test_training_records_its_validation_choices_and_the_served_choice_is_validation_best(sparse_runs):
    for r in sparse_runs:
        m = r.metrics
        # MF learns nothing that generalises on ~3 purchases per article: training says so and falls back
        assert m["id_model"]["fallback"]["chosen_on"] == "warm-validation NDCG@20"
        tried = m["id_model"]["fallback"]["warm_val_ndcg@20"]
        assert set(tried) == {"mf", "lightgcn", "mf-l2x10"} and tried[m["id_model"]["fallback"]["chosen"]] == max(tried.values())
        sel = m["selection"]
        assert {"generator:both", "gate", "proxy", "diffusion", "anchor"} <= set(sel["validation"])
        assert sel["validation"][sel["served"]] == max(sel["validation"].values())
        assert r.experts.choice == sel["served"]
