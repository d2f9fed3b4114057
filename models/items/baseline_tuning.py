"""Every baseline tuned with the default's care (issue 57): a small grid per family, fixed here before any run of it,
each point trained once on the seed's split and early-stopped on validation's "stop" items as the generator is; the
point with the best validation-cold NDCG@20 on the "select" part (the score the default's candidates are chosen by)
is the tuned baseline, ties to the earlier point (the untuned one is first); then that point is averaged over
``generator_seeds`` seeds as the default averages its generators (``nth_seed``, the mean of the vectors). Test is
never read here: the caller scores what this returns.

The grids: content-kNN over neighbours {1, 5, 10, 20, 50} x weighting {uniform, softmax(cosine / 0.1), softmax(cosine
/ 0.02)}, every combination. CB2CF, DropoutNet and CLCRec one axis at a time from the untuned point: hidden width 256
-> 512, learning rate 1e-3 -> 3e-3, dropout 0.1 -> 0.3, and for DropoutNet and CLCRec the warm norm (a cold vector at
unit length x the warm items' mean norm) switched; then, where more than one of those single moves beat the untuned
point on validation, the point that makes all of them. The untuned points are the rows as they were: kNN 5 uniform;
the generator's width 256, learning rate 1e-3, dropout 0.1; CLCRec with the warm norm, DropoutNet without. The choice
is the validation-best, with no floor: a baseline gets every point that helps it.

A full product grid for the three neural families (16 points each for DropoutNet and CLCRec) was the first rule; it
was cut to this one before any DropoutNet or CLCRec point had finished, on its measured cost (one DropoutNet point
took 70 s on the sparse catalogue's 5,050 training clicks, 2 cores shared with another run; MovieLens has about 8
times as many, and DropoutNet's epoch visits every one: 16 points x 3 seeds x 2 spaces would not fit a session). One
CB2CF result of the first grid had been seen (the sparse catalogue's seed 0 chose width 512, dropout 0.3); this grid
can reach that point only through the combination step.
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
NEURAL_UNTUNED = {"proxy_hidden": 256, "proxy_lr": 1e-3, "proxy_dropout": 0.1}  # the generator's (TrainSettings)
NEURAL_MOVES = {"proxy_hidden": 512, "proxy_lr": 3e-3, "proxy_dropout": 0.3}  # where each axis moves to
FAMILIES = {  # family -> (fit, the untuned point's warm norm: None where the family has no such choice)
    "CB2CF": (cb2cf_embeddings, None),
    "DropoutNet": (dropoutnet_embeddings, False),
    "CLCRec": (clcrec_embeddings, True),
}
TUNED = " tuned"  # a tuned row's name: the family's and this
ENSEMBLED = " tuned + ensembled"


def grid(family: str) -> list[dict]:
    """The family's grid (for a neural family its first stage: the single moves), the untuned point first."""
    if family == "content-kNN":
        return KNN_GRID
    norm = FAMILIES[family][1]
    untuned = NEURAL_UNTUNED | ({} if norm is None else {"with_warm_norm": norm})
    moves = NEURAL_MOVES | ({} if norm is None else {"with_warm_norm": not norm})
    return [untuned] + [untuned | {k: v} for k, v in moves.items()]


def combined(family: str, scores: list[float]) -> dict | None:
    """The point making every single move of ``grid(family)`` that beat the untuned point (``scores``: the grid's
    validation scores, in its order), when more than one did; None otherwise, and for kNN (a full grid already)."""
    if family == "content-kNN":
        return None
    untuned, *moves = grid(family)
    better = [p for p, s in zip(moves, scores[1:]) if s > scores[0]]
    if len(better) < 2:
        return None
    point = dict(untuned)
    for p in better:
        point |= {k: v for k, v in p.items() if v != untuned[k]}
    return point


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
    p, scores, best = prepared, [], {}

    def run(point: dict) -> None:
        emb = fit_point(family, point, p, items, p.settings.seed)
        score = validation_cold_ndcg(p.user_emb, emb, p.split, "select")
        scores.append({"point": point, "val_cold_ndcg@20": score})
        if not best or score > best["score"]:  # the first of equals: the untuned point before any
            best.update(score=score, emb=emb, point=point)

    for point in grid(family):
        run(point)
    if (both := combined(family, [r["val_cold_ndcg@20"] for r in scores])) is not None:
        run(both)  # the second stage: the single moves that helped, together
    best_emb, chosen = best["emb"], best["point"]
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
