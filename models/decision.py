"""The decision rule with a floor (issue 57, item 2): when a costlier option, or a change to today's default, is
adopted.

The rule before it (mean ahead and ahead on at least 2 of 3 seeds) adopts an option that changes nothing about 42%
of the time. This one asks the paired gain to clear a floor:

- pairs are per seed (the same seed's split, ID model and initialisation on both sides), at least ``MIN_PAIRS``;
- the floor is the larger of a relative margin (``RELATIVE_MARGIN`` of the cheaper option's mean: a gain too small
  to matter is not bought with more training or serving) and the one-sided ``CONFIDENCE`` quantile of Student's t
  times the standard error of the paired differences (a paired t-test: under no real difference it adopts at most
  1 - ``CONFIDENCE`` of the time);
- the costlier option (or, at equal cost, the change) is adopted only if the mean paired gain exceeds the floor;
  otherwise the cheaper option (today's default) stays.

``clears`` applies it; every benchmark that decides a default calls it, and ``docs/ablations.md`` says which defaults
it changed.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

RELATIVE_MARGIN = 0.01
CONFIDENCE = 0.95
MIN_PAIRS = 3
BOOTSTRAP_CELLS = 1 << 22  # user indices drawn at once by bootstrap_clears (32 MiB of int64)


def _paired(cheaper, costlier) -> tuple[np.ndarray, np.ndarray]:
    """(the cheaper option's values, the paired gains of the costlier one) as arrays; unpaired input is refused."""
    lo, hi = np.asarray(cheaper, dtype=float), np.asarray(costlier, dtype=float)
    if lo.shape != hi.shape or lo.ndim != 1:
        raise ValueError(f"paired values of the same length expected, got {lo.shape} and {hi.shape}")
    return lo, hi - lo


def _verdict(lo: np.ndarray, d: np.ndarray, half_width: float, margin: float) -> dict:
    """The floor (the larger of ``margin`` of the cheaper mean and ``half_width``) and whether the mean gain clears
    it."""
    f = float(max(margin * abs(lo.mean()), half_width))
    adopt = bool(d.mean() > f)
    why = f"mean gain {d.mean():+.4f} {'>' if adopt else '<='} floor {f:.4f}"
    return {"floor": f, "adopt": adopt, "why": why}


def clears(cheaper, costlier, margin: float = RELATIVE_MARGIN, confidence: float = CONFIDENCE) -> dict:
    """Whether ``costlier`` (per-seed values, paired with ``cheaper``'s, higher is better) is adopted: its mean
    paired gain exceeds the floor, whose second term is a one-sided paired t bound. The answer carries the numbers a
    note or a manifest shows."""
    lo, d = _paired(cheaper, costlier)
    out = {"pairs": len(d), "gain": d.tolist(), "mean_gain": float(d.mean()) if len(d) else 0.0}
    if len(d) < MIN_PAIRS:
        return out | {"floor": None, "adopt": False, "why": f"{len(d)} pairs; the rule asks {MIN_PAIRS}"}
    half = stats.t.ppf(confidence, len(d) - 1) * (d.std(ddof=1) / np.sqrt(len(d)))
    return out | _verdict(lo, d, half, margin)


def bootstrap_clears(
    cheaper,
    costlier,
    margin: float = RELATIVE_MARGIN,
    confidence: float = CONFIDENCE,
    resamples: int = 2000,
    seed: int = 0,
) -> dict:
    """The same rule inside one training, where there is one seed but many validation users: ``cheaper`` and
    ``costlier`` are per-user scores on the same users; the floor's second term is the one-sided ``confidence``
    half-width of the mean paired gain, from ``resamples`` bootstrap draws of the users (a fixed ``seed``, so a
    training's choice is reproducible)."""
    lo, d = _paired(cheaper, costlier)
    if len(d) < 2:
        return {"users": len(d), "mean_gain": float(d.sum()), "floor": None, "adopt": False, "why": "too few users"}
    rng, means = np.random.default_rng(seed), []
    chunk = max(1, BOOTSTRAP_CELLS // len(d))  # draws at a time: memory bounded however many users validate
    for start in range(0, resamples, chunk):  # the same stream as one (resamples, users) draw
        means.append(d[rng.integers(0, len(d), (min(chunk, resamples - start), len(d)))].mean(1))
    half = float(d.mean() - np.quantile(np.concatenate(means), 1.0 - confidence))
    return {"users": len(d), "mean_gain": float(d.mean())} | _verdict(lo, d, half, margin)
