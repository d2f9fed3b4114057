"""Greedy ensemble selection on validation (Caruana et al., ICML 2004): how training blends the fused,
text-only and image-only generators into the served one (issue 21).

A blend starts from the validation-best single candidate and adds, with replacement, whichever candidate
raises the validation score of the running average most; the best-scoring prefix is kept. So a blend
scores at least every single candidate on validation by construction, and where one candidate is best
alone the blend is that candidate. Averaging generators also damps what one early-stopped generator
gets wrong by chance. On MovieLens validation prefers the text-only generator on every seed.

Blending the served experts the same way (the gate's mix with single experts) was measured and is not
done: it lowered MovieLens cold Recall@20 on two seeds of three (docs/models.md).
"""

from __future__ import annotations

from typing import Callable

import numpy as np


def greedy_blend(
    outputs: dict[str, np.ndarray], score: Callable[[np.ndarray], float], rounds: int, prefer: str
) -> tuple[dict[str, float], float, dict[str, float]]:
    """``outputs``: each candidate's vectors for the validation items; ``score``: validation score of
    such vectors; ``rounds``: candidates averaged at most (1: the single best); ties go to ``prefer``.
    Returns (weights by candidate, summing to 1, without zero weights; the blend's score; every single
    candidate's score)."""
    if rounds < 1:
        raise ValueError(f"a blend needs at least one round, not {rounds}")
    names = sorted(outputs, key=lambda n: n != prefer)  # the preferred first: max() keeps the first of ties
    singles = {n: float(score(outputs[n])) for n in names}
    first = max(names, key=singles.__getitem__)
    counts, total = {first: 1}, outputs[first].astype(np.float64)
    best, best_score = dict(counts), singles[first]
    for size in range(2, rounds + 1):
        trial = {n: float(score(((total + outputs[n]) / size).astype(np.float32))) for n in names}
        pick = max(names, key=trial.__getitem__)
        total = total + outputs[pick]
        counts[pick] = counts.get(pick, 0) + 1
        if trial[pick] > best_score + 1e-12:
            best, best_score = dict(counts), trial[pick]
    n = sum(best.values())
    return {k: v / n for k, v in best.items()}, best_score, singles


def describe(weights: dict[str, float]) -> str:
    """``"gate 0.6 + proxy 0.4"``; a single candidate's name alone."""
    if len(weights) == 1:
        return next(iter(weights))
    return " + ".join(f"{k} {w:.2f}" for k, w in sorted(weights.items(), key=lambda kv: -kv[1]))
