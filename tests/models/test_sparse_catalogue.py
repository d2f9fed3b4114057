"""Issue 21: on a sparse catalogue of near-duplicate variants (generated: ~2,500 articles in colour
variants, ~8 purchases per user) the default package must not lose to its parts or to the simplest
baseline. Trained with the default settings on 3 seeds; judged on the validation-cold items (both parts: the
early-stopping one and the selection one), never on the test split, which is only reported: the default beats
content-kNN by 10% (and the single-modality generators where ``select_modalities`` trains them), and training says
what it chose on validation (the ID-model fallback, the generators, the served expert and its margin) and why."""

from __future__ import annotations

import numpy as np
import pytest

from coldproxy.config import TrainSettings
from models.evaluate import evaluate_candidates
from models.items.baselines import knn_embeddings
from models.items.proxy_training import predict
from models.items.train import check_selection
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
        s = TrainSettings(
            data_dir=data,
            data_format="generic",
            seed=seed,
            cache_dir=root / "cache",
            work_dir=root / f"train{seed}",
            package_dir=root / f"package{seed}",
            **overrides,
        )
        runs.append(train(s, encoder_graphs, progress=False))
    return runs


@pytest.fixture(scope="module")
def sparse_runs(catalogue):
    return train_seeds(catalogue)


def cold_recall(result, emb) -> float:
    """Recall@20 of the validation-cold items ranked among themselves (as the test-cold ones are for the report)."""
    items, positives = result.split.validation("all")
    return evaluate_candidates(result.user_emb, emb, items, positives, None, (20,))["recall@20"]


def rows(result) -> dict[str, float]:
    f, sp, I = result.features, result.split, result.item_emb
    cold = np.concatenate([sp.val_items, sp.test_items])
    out = {
        "default": cold_recall(result, result.served_item_emb()),
        "content-kNN": cold_recall(result, knn_embeddings(f, I, sp.warm_items, cold, neighbours=5)),
    }
    for m in ("text", "image"):  # fitted by training, as served (routed to the fused one where absent)
        if m not in result.generators:  # select_modalities off (the default): the fused generator alone
            continue
        model = result.generators[m]
        emb = I.copy()
        emb[cold] = predict(model, f, cold)
        out[f"{m} only"] = cold_recall(result, emb)
    return out


def test_the_default_beats_knn_by_ten_percent_on_validation(sparse_runs):
    """Every seed: above kNN (and image-only where trained); over the seeds: 1.10x kNN (and above text-only where
    trained), on the validation-cold items (the served choice was made on part of them, so this checks the choice,
    not how it generalises: the test split's numbers are the benchmark's, bench/results/quality_sparse_catalogue*.md).
    """
    table = [rows(r) for r in sparse_runs]
    for seed, row in zip(SEEDS, table):
        assert row["default"] >= max(row["content-kNN"], row.get("image only", 0.0)), (seed, row)
    mean = {k: float(np.mean([row[k] for row in table])) for k in table[0]}
    assert mean["default"] >= max(1.10 * mean["content-kNN"], mean.get("text only", 0.0)), mean


def test_training_records_its_validation_choices_and_serves_the_floor_checked_choice(sparse_runs):
    for r in sparse_runs:
        m = r.metrics
        # the default ID model (LightGCN) learns here: no fallback needed (MF's is tested below)
        assert m["id_model"]["type"] == "lightgcn-bpr" and m["id_model"]["diagnostics"]["learnt"], m["id_model"]
        assert "fallback" not in m["id_model"]
        sel = m["selection"]
        assert {"generator:both", "gate", "proxy", "diffusion", "anchor"} <= set(sel["validation"])
        assert sel["validation"]["proxy"] == max(v for k, v in sel["validation"].items() if k.startswith("generator:"))
        assert sum(sel["generator_weights"].values()) == pytest.approx(1.0)
        check_selection(sel)
        assert r.experts.choice == sel["served"]


def test_an_id_model_that_learns_nothing_falls_back_to_the_warm_validation_best(catalogue):
    """MF learns nothing that generalises on ~3 purchases per article: training says so, also fits
    LightGCN and a 10x-L2 MF, and keeps the warm-validation best (the test split is never looked at)."""
    from models.data import load_dataset
    from models.idmodel import train_id_model_checked
    from models.split import cold_start_split

    root, data = catalogue
    s = TrainSettings(data_dir=data, data_format="generic", seed=0, cache_dir=root / "cache", id_model="mf")
    ds = load_dataset(s)
    split = cold_start_split(ds, s.seed, s.split_ratios)
    _, _, log = train_id_model_checked(ds.n_users, ds.n_items, split, s, progress=False)
    fallback = log["fallback"]
    assert fallback["chosen_on"] == "warm-validation NDCG@20"
    tried = fallback["warm_val_ndcg@20"]
    assert set(tried) == {"mf", "lightgcn", "mf-l2x10"} and tried[fallback["chosen"]] == max(tried.values())
    assert tried["mf"] < tried["lightgcn"] and log["type"] == "lightgcn"
