"""Top-K ranking metrics and the cold / warm / all-items scenarios of the item cold-start protocol.

Binary relevance. Recall@K = hits in top K / |relevant|; NDCG@K = DCG@K / IDCG@K with the ideal
ranking of min(|relevant|, K) hits. Users without a relevant candidate are skipped. A user's
training positives are removed from their candidate list in the warm and all-items scenarios.
"""

from __future__ import annotations

import numpy as np

from models.data import Interactions
from models.split import ColdStartSplit

KS = (10, 20)


def top_columns(scores: np.ndarray, k: int) -> np.ndarray:
    """Each row's ``k`` best columns (fewer when there are fewer), best first."""
    kmax = min(k, scores.shape[1])
    top = np.argpartition(-scores, kmax - 1, axis=1)[:, :kmax]
    order = np.take_along_axis(scores, top, axis=1).argsort(axis=1, kind="stable")[:, ::-1]
    return np.take_along_axis(top, order, axis=1)


def ranking_metrics(
    scores: np.ndarray, relevant: list[np.ndarray], ks=KS, top: np.ndarray | None = None, per_user: bool = False
) -> dict:
    """scores [U, C] (higher is better), relevant[u] = candidate columns relevant to row u; ``top``:
    ``top_columns(scores, max(ks))`` when the caller has it already; ``per_user``: each user's values (arrays), not
    their means."""
    kmax = min(max(ks), scores.shape[1])
    top = top_columns(scores, kmax) if top is None else top
    sizes = np.array([len(r) for r in relevant])
    relevant_mask = np.zeros((len(relevant), scores.shape[1]), bool)  # one pass instead of an isin per user
    if len(relevant):
        relevant_mask[np.repeat(np.arange(len(relevant)), sizes), np.concatenate(relevant).astype(np.int64)] = True
    hits = np.take_along_axis(relevant_mask, top[:, :kmax], axis=1)[sizes > 0].astype(np.float64)
    sizes = sizes[sizes > 0]
    n = len(sizes)
    discounts = 1.0 / np.log2(np.arange(2, kmax + 2))
    ideal = np.concatenate([[1.0], np.cumsum(discounts)])  # ideal[j]: IDCG of j hits (0 unused)
    out = {}
    for k in ks:
        out[f"recall@{k}"] = hits[:, :k].sum(1) / sizes
        out[f"ndcg@{k}"] = (hits[:, :k] * discounts[:k]).sum(1) / ideal[np.minimum(sizes, min(k, kmax))]
    if per_user:  # each user's value, in the rows' order (users without a relevant candidate left out)
        return {f"{m}@{k}": out[f"{m}@{k}"] for k in ks for m in ("recall", "ndcg")} | {"users": n}
    return {f"{m}@{k}": float(out[f"{m}@{k}"].sum() / n) if n else 0.0 for k in ks for m in ("recall", "ndcg")} | {
        "users": n
    }


def hit_rates(top: np.ndarray, relevant: list[np.ndarray], marked: list[np.ndarray], k: int) -> dict[str, float]:
    """Share of all relevant candidates, and of the ``marked`` ones among them, that reach their user's top
    k (``top``: ``top_columns`` of the scores, at least k wide): in the all-items scenario, whether new items
    get into the lists at their share of the positives."""
    found = [np.isin(rel, row[:k]) for row, rel in zip(top, relevant)]
    hits, flags = np.concatenate(found), np.concatenate(marked)
    return {
        f"hit_rate@{k}": float(hits.mean()) if len(hits) else 0.0,
        f"new_item_hit_rate@{k}": float(hits[flags].mean()) if flags.any() else 0.0,
        "new_item_share_of_positives": float(flags.mean()) if len(flags) else 0.0,
    }


def evaluate_candidates(
    user_emb: np.ndarray,
    item_emb: np.ndarray,
    candidates: np.ndarray,
    test: Interactions,
    exclude: Interactions | None = None,
    ks=KS,
    new_items: np.ndarray | None = None,
    per_user: bool = False,
) -> dict:
    """Rank ``candidates`` (item indices; rows of ``item_emb``) for every user with a test positive among
    them; with ``new_items``, also the hit rates of ``hit_rates`` at the largest K for those items; ``per_user``:
    each user's values (``ranking_metrics``), the users in ascending order."""
    col = -np.ones(item_emb.shape[0], dtype=np.int64)
    col[candidates] = np.arange(len(candidates))
    keep = col[test.items] >= 0
    users = np.unique(test.users[keep])
    if len(users) == 0:
        return ranking_metrics(np.zeros((0, 1)), [], ks)
    row = -np.ones(user_emb.shape[0], dtype=np.int64)
    row[users] = np.arange(len(users))
    scores = user_emb[users] @ item_emb[candidates].T
    if exclude is not None:
        ex = (row[exclude.users] >= 0) & (col[exclude.items] >= 0)
        scores[row[exclude.users[ex]], col[exclude.items[ex]]] = -np.inf
    relevant: list[list[int]] = [[] for _ in users]
    for u, i in zip(row[test.users[keep]], col[test.items[keep]]):
        relevant[u].append(i)
    relevant_cols = [np.array(r, np.int64) for r in relevant]
    top = top_columns(scores, max(ks))  # once, for the metrics and the hit rates
    out = ranking_metrics(scores, relevant_cols, ks, top, per_user)
    if new_items is not None:
        out |= hit_rates(top, relevant_cols, [np.isin(candidates[r], new_items) for r in relevant_cols], max(ks))
    return out


def _concat(*parts: Interactions) -> Interactions:
    return Interactions(np.concatenate([p.users for p in parts]), np.concatenate([p.items for p in parts]))


def evaluate_split(user_emb: np.ndarray, item_emb: np.ndarray, split: ColdStartSplit, ks=KS) -> dict[str, dict]:
    """The three scenarios: cold (test-cold items only), warm (warm items), all (warm + test-cold)."""
    seen = _concat(split.train, split.warm_val)
    return {
        "cold": evaluate_candidates(user_emb, item_emb, split.test_items, split.cold_test, None, ks),
        "warm": evaluate_candidates(user_emb, item_emb, split.warm_items, split.warm_test, seen, ks),
        "all": evaluate_candidates(
            user_emb,
            item_emb,
            np.concatenate([split.warm_items, split.test_items]),
            _concat(split.warm_test, split.cold_test),
            seen,
            ks,
            new_items=split.test_items,
        ),
    }


def evaluate_decision(user_emb: np.ndarray, item_emb: np.ndarray, split: ColdStartSplit, ks=KS) -> dict | None:
    """The cold scenario on the split's decide part (``cold_start_split``'s ``decide_share``), ranked among those
    items as the test-cold ones are among theirs; None without a decide part."""
    if split.decide_items is None:
        return None
    return evaluate_candidates(user_emb, item_emb, split.decide_items, split.cold_decide, None, ks)


def validation_cold_ndcg(
    user_emb: np.ndarray, item_emb: np.ndarray, split: ColdStartSplit, part: str = "stop"
) -> float:
    """NDCG@20 on the validation-cold items of ``part`` (``ColdStartSplit.validation``): "stop" is the
    early-stopping signal for content models, "select" the score trained candidates are chosen by."""
    v = validation_cold_ndcg_per_user(user_emb, item_emb, split, part)
    return float(v.sum() / len(v)) if len(v) else 0.0


def validation_cold_ndcg_per_user(
    user_emb: np.ndarray, item_emb: np.ndarray, split: ColdStartSplit, part: str = "stop"
) -> np.ndarray:
    """``validation_cold_ndcg``'s per-user values, the users in ascending order (the same users for any
    ``item_emb``): what a paired choice between two candidates bootstraps over."""
    items, positives = split.validation(part)
    return evaluate_candidates(user_emb, item_emb, items, positives, None, (20,), per_user=True)["ndcg@20"]
