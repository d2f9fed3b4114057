"""Every baseline tuned with the default's care (issue 57): a small grid per family, fixed here before any run of it,
each point trained once on the seed's split and early-stopped on validation's "stop" items as the generator is; the
point with the best validation-cold NDCG@20 on the "select" part (the score the default's candidates are chosen by)
is the tuned baseline, ties to the earlier point (the untuned one is first); then that point is averaged over
``generator_seeds`` seeds as the default averages its generators (``nth_seed``, the mean of the vectors). Test is
never read here: the caller scores what this returns.

The grids: content-kNN over neighbours {1, 5, 10, 20, 50} x weighting {uniform, softmax(cosine / 0.1), softmax(cosine
/ 0.02)}; CB2CF, DropoutNet and CLCRec over hidden width {256, 512} x learning rate {1e-3, 3e-3} x dropout {0.1, 0.3},
DropoutNet and CLCRec each with and without the warm norm (a cold vector at unit length x the warm items' mean norm).
The untuned points are the rows as they were: kNN 5 uniform; the generator's width 256, learning rate 1e-3, dropout
0.1; CLCRec with the warm norm, DropoutNet without. The choice is the validation-best, with no floor: a baseline gets
every point that helps it.
"""

from __future__ import annotations

import itertools

import numpy as np

from models.evaluate import validation_cold_ndcg
from models.items.baselines import cb2cf_embeddings, clcrec_embeddings, dropoutnet_embeddings, knn_embeddings
from models.training import nth_seed

KNN_GRID = [
    {"neighbours": n, "temperature": t}
    for t, n in itertools.product((None, 0.1, 0.02), (5, 1, 10, 20, 50))  # (5, None) first: the untuned point
]
NEURAL_GRID = [
    {"proxy_hidden": h, "proxy_lr": lr, "proxy_dropout": d}
    for h, lr, d in itertools.product((256, 512), (1e-3, 3e-3), (0.1, 0.3))
]
FAMILIES = {  # family -> (fit, its grid, the untuned point's warm norm: None where the family has no such choice)
    "CB2CF": (cb2cf_embeddings, NEURAL_GRID, None),
    "DropoutNet": (dropoutnet_embeddings, NEURAL_GRID, False),
    "CLCRec": (clcrec_embeddings, NEURAL_GRID, True),
}
TUNED = " tuned"  # a tuned row's name: the family's and this
ENSEMBLED = " tuned + ensembled"


def grid(family: str) -> list[dict]:
    """The family's grid, the untuned point first."""
    if family == "content-kNN":
        return KNN_GRID
    _, points, norm = FAMILIES[family]
    if norm is None:
        return points
    return [p | {"with_warm_norm": w} for w in (norm, not norm) for p in points]


def fit_point(family: str, point: dict, prepared, items: np.ndarray, seed: int) -> np.ndarray:
    """The item vectors one grid point gives (``items`` predicted, every other row its ID embedding)."""
    p = prepared
    if family == "content-kNN":
        return knn_embeddings(p.features, p.item_emb, p.split.warm_items, items, **point)
    fn = FAMILIES[family][0]
    settings = p.settings.model_copy(update={k: v for k, v in point.items() if k.startswith("proxy_")} | {"seed": seed})
    extra = {k: v for k, v in point.items() if not k.startswith("proxy_")}
    return fn(p.features, p.split, p.user_emb, p.item_emb, items, settings, progress=False, **extra)[0]


def tune(family: str, prepared, items: np.ndarray) -> tuple[np.ndarray, np.ndarray | None, dict]:
    """The family's tuned vectors, its tuned + ensembled ones (None with one seed, or for kNN, which has no seed), and
    the record: every point's validation score, the one chosen."""
    p = prepared
    scores = []
    best, best_emb = -1.0, None
    for point in grid(family):
        emb = fit_point(family, point, p, items, p.settings.seed)
        score = validation_cold_ndcg(p.user_emb, emb, p.split, "select")
        scores.append({"point": point, "val_cold_ndcg@20": score})
        if score > best:
            best, best_emb, chosen = score, emb, point
    record = {"chosen": chosen, "chosen_is_untuned": chosen == grid(family)[0], "grid": scores}
    n = p.settings.generator_seeds
    if family == "content-kNN" or n == 1:
        return best_emb, None, record
    members = [best_emb] + [fit_point(family, chosen, p, items, nth_seed(p.settings.seed, j)) for j in range(1, n)]
    ensembled = best_emb.copy()
    ensembled[items] = np.mean([m[items] for m in members], axis=0)
    record["ensemble"] = {
        "seeds": n,
        "val_cold_ndcg@20": validation_cold_ndcg(p.user_emb, ensembled, p.split, "select"),
    }
    return best_emb, ensembled, record
