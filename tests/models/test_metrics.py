"""Recall@K / NDCG@K against hand-computed cases."""

import math

import numpy as np
import pytest

from models.data import Interactions
from models.evaluate import evaluate_candidates, ranking_metrics


def test_hand_computed_case():
    # one user, 5 candidates ranked 0 > 1 > 2 > 3 > 4; relevant columns {1, 4}
    scores = np.array([[5.0, 4.0, 3.0, 2.0, 1.0]])
    m = ranking_metrics(scores, [np.array([1, 4])], ks=(2, 5))
    assert m["recall@2"] == pytest.approx(0.5)
    assert m["recall@5"] == pytest.approx(1.0)
    idcg2 = 1 + 1 / math.log2(3)
    assert m["ndcg@2"] == pytest.approx((1 / math.log2(3)) / idcg2)
    assert m["ndcg@5"] == pytest.approx((1 / math.log2(3) + 1 / math.log2(6)) / idcg2)


def test_idcg_uses_min_relevant_k_and_users_are_averaged():
    scores = np.array([[3.0, 2.0, 1.0], [1.0, 2.0, 3.0]])
    m = ranking_metrics(scores, [np.array([0]), np.array([0, 1, 2])], ks=(1,))
    # user 0: hit at rank 1 -> recall 1, ndcg 1; user 1: top-1 is col 2 (relevant) -> recall 1/3, ndcg 1
    assert m["recall@1"] == pytest.approx((1 + 1 / 3) / 2)
    assert m["ndcg@1"] == pytest.approx(1.0)
    assert m["users"] == 2


def test_users_without_relevant_items_are_skipped():
    m = ranking_metrics(np.array([[1.0, 0.0], [1.0, 0.0]]), [np.array([1]), np.array([], dtype=int)], ks=(1,))
    assert m["users"] == 1 and m["recall@1"] == 0.0


def test_excluded_training_positives_cannot_be_hits():
    user = np.array([[1.0, 0.0]])
    items = np.array([[3.0, 0.0], [2.0, 0.0], [1.0, 0.0]])
    test = Interactions(np.array([0]), np.array([1]))
    seen = Interactions(np.array([0]), np.array([0]))
    assert evaluate_candidates(user, items, np.arange(3), test, None, (1,))["recall@1"] == 0.0
    assert evaluate_candidates(user, items, np.arange(3), test, seen, (1,))["recall@1"] == 1.0


def test_hit_rates_count_each_positive_and_the_new_items_among_them():
    from models.evaluate import hit_rates, top_columns

    scores = np.array([[5.0, 4.0, 3.0, 2.0], [1.0, 2.0, 3.0, 4.0]])
    relevant = [np.array([0, 3]), np.array([0, 3])]  # top 2: {0, 1} and {3, 2}
    marked = [np.array([False, True]), np.array([True, False])]
    out = hit_rates(top_columns(scores, 2), relevant, marked, k=2)
    assert out["hit_rate@2"] == 0.5  # positives 0 (user 0) and 3 (user 1) are in; 3 (user 0) and 0 (user 1) are not
    assert out["new_item_hit_rate@2"] == 0.0 and out["new_item_share_of_positives"] == 0.5
