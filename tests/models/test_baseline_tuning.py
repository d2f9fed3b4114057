"""The baselines tuned with the default's care (issue 57): each grid starts at the untuned point (the rows as they
were), the tuned baseline is the grid's validation-best point and is what is returned, the ensemble is the mean of
``generator_seeds`` seeds of that point, and kNN's weighting spans uniform to nearest-only."""

import inspect

import numpy as np
import pytest

from coldproxy.config import TrainSettings
from models.evaluate import validation_cold_ndcg
from models.items import baseline_tuning
from models.items.baseline_tuning import combined, fit_point, grid, tune
from models.items.baselines import clcrec_embeddings, dropoutnet_embeddings, knn_embeddings
from models.items.train import Prepared
from models.training import nth_seed
from tests.models.random_features import tiny_split_and_features


def test_every_grid_starts_at_the_untuned_point_the_rows_were_run_with():
    defaults = TrainSettings()
    assert grid("content-kNN")[0] == {"neighbours": 5, "temperature": None}
    assert inspect.signature(knn_embeddings).parameters["temperature"].default is None
    for family, fn in (("CB2CF", None), ("DropoutNet", dropoutnet_embeddings), ("CLCRec", clcrec_embeddings)):
        first = grid(family)[0]
        assert (first["proxy_hidden"], first["proxy_lr"], first["proxy_dropout"]) == (
            defaults.proxy_hidden,
            defaults.proxy_lr,
            defaults.proxy_dropout,
        )
        if fn is not None:  # the warm norm the untuned row is fitted with
            assert first["with_warm_norm"] is inspect.signature(fn).parameters["with_warm_norm"].default
        assert len({tuple(sorted(p.items())) for p in grid(family)}) == len(grid(family))  # no point twice


def test_knn_weighting_goes_from_the_uniform_mean_to_the_nearest_neighbour():
    split, feats, _, item_emb = tiny_split_and_features()
    cold, warm = split.test_items, split.warm_items
    uniform = knn_embeddings(feats, item_emb, warm, cold, neighbours=5)
    np.testing.assert_allclose(
        knn_embeddings(feats, item_emb, warm, cold, neighbours=5, temperature=1e6)[cold], uniform[cold], atol=1e-5
    )
    nearest = knn_embeddings(feats, item_emb, warm, cold, neighbours=1)
    np.testing.assert_allclose(
        knn_embeddings(feats, item_emb, warm, cold, neighbours=5, temperature=1e-4)[cold], nearest[cold], atol=1e-4
    )
    soft = knn_embeddings(feats, item_emb, warm, cold, neighbours=5, temperature=0.1)
    assert not np.allclose(soft[cold], uniform[cold]) and not np.allclose(soft[cold], nearest[cold])
    np.testing.assert_array_equal(soft[warm], item_emb[warm])  # warm items keep their ID embeddings


@pytest.fixture()
def small_grid(monkeypatch):
    monkeypatch.setattr(baseline_tuning, "NEURAL_UNTUNED", {"proxy_hidden": 8, "proxy_lr": 1e-3, "proxy_dropout": 0.0})
    monkeypatch.setattr(baseline_tuning, "NEURAL_MOVES", {"proxy_hidden": 32, "proxy_lr": 3e-2})
    return grid("CB2CF")


def test_the_second_stage_makes_every_single_move_that_helped_together():
    untuned, wider, faster, dropout, norm = grid("CLCRec")
    assert (wider["proxy_hidden"], faster["proxy_lr"], dropout["proxy_dropout"]) == (512, 3e-3, 0.3)
    assert norm["with_warm_norm"] is not untuned["with_warm_norm"]
    assert combined("CLCRec", [0.30, 0.31, 0.29, 0.30, 0.32]) == untuned | {"proxy_hidden": 512} | {
        "with_warm_norm": norm["with_warm_norm"]
    }
    assert combined("CLCRec", [0.30, 0.31, 0.29, 0.30, 0.30]) is None  # one move helped: it is already a point
    assert combined("content-kNN", [0.1] * len(grid("content-kNN"))) is None


def prepared(generator_seeds: int) -> Prepared:
    split, feats, U, I = tiny_split_and_features()
    s = TrainSettings(proxy_epochs=3, proxy_patience=3, proxy_batch=32, generator_seeds=generator_seeds, seed=3)
    return Prepared(s, None, split, feats, U, I, {}, None, {})


def test_the_tuned_baseline_is_the_validation_best_point_and_is_what_is_returned(small_grid):
    p = prepared(1)
    cold = np.concatenate([p.split.val_items, p.split.test_items])
    tuned, ensembled, record = tune("CB2CF", p, cold)
    scores = [r["val_cold_ndcg@20"] for r in record["grid"]]
    assert [r["point"] for r in record["grid"]][: len(small_grid)] == small_grid
    assert len(record["grid"]) == len(small_grid) + (combined("CB2CF", scores) is not None)
    assert record["chosen"] == small_grid[int(np.argmax(scores))]
    assert validation_cold_ndcg(p.user_emb, tuned, p.split, "select") == pytest.approx(max(scores))
    assert record["chosen_is_untuned"] is (record["chosen"] == small_grid[0])
    assert ensembled is None  # the default averages one seed: so does the baseline
    np.testing.assert_array_equal(tuned[p.split.warm_items], p.item_emb[p.split.warm_items])


def test_with_the_defaults_seeds_the_tuned_point_is_averaged_over_as_many_seeds(small_grid):
    p = prepared(2)
    cold = np.concatenate([p.split.val_items, p.split.test_items])
    tuned, ensembled, record = tune("CB2CF", p, cold)
    second = fit_point("CB2CF", record["chosen"], p, cold, nth_seed(p.settings.seed, 1))
    np.testing.assert_allclose(ensembled[cold], (tuned[cold] + second[cold]) / 2, atol=1e-6)
    assert not np.allclose(second[cold], tuned[cold])  # another seed is another model
    assert record["ensemble"]["seeds"] == 2
    assert record["ensemble"]["val_cold_ndcg@20"] == pytest.approx(
        validation_cold_ndcg(p.user_emb, ensembled, p.split, "select")
    )
