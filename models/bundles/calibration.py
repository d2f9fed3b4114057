"""Stage 4 of the bundle model: the cold calibration (``coldproxy.bundle_package.ColdCalibration``).

For bundles without interactions: a scale per view, the bundle view's source (the gate's or the
anchor itself) and a size prior α·log(members), chosen on the tune split by grid search, the identity
included (so never worse there than the gate alone). Without the calibration cold bundles carry no
popularity: their gate-bounded vectors sit on another scale than warm ones, and log(size) (r ≈ 0.45
with a bundle's interactions on Youshu) is averaged away by every path that builds a cold vector.
Then, the rest fixed, an offset β is added to every such bundle's score, in units of the spread of
the tune users' scores of warm bundles: it only moves new bundles against warm ones, so it matters
where tune mixes both (the all scenario).

Served bundle vector: [g_B·r_b^B ; g_I·r_b^I ; 0] for a bundle with interactions, the calibrated
[c_B·r_b^B ; c_I·r_b^I ; α·log|b| + β] for one without; user vector [r_u^B ; r_u^I ; 1], so y_ub is one
inner product and FAISS ranks bundles like items.
"""

from __future__ import annotations

import itertools

import numpy as np
from tqdm.auto import tqdm

from coldproxy.bundle_package import ColdCalibration, with_bias_column
from coldproxy.config import BundleSettings
from models.bundles.data import BundleData
from models.bundles.backbone import evaluate


def served_vectors(data: BundleData, gated: np.ndarray, anchor: np.ndarray, calibration: ColdCalibration) -> np.ndarray:
    """[n_bundles, 2·dim + 1]: bundles with interactions as the gate gives them (size component 0),
    the others through ``calibration`` -- what the package serves for a POSTed bundle."""
    out = with_bias_column(gated, 0.0)
    cold = data.bundle_counts() == 0
    out[cold] = calibration.cold(gated[cold], anchor[cold], data.bundle_sizes()[cold])
    return out


def calibrate_cold(data: BundleData, users: np.ndarray, gated: np.ndarray, anchor: np.ndarray,
                   settings: BundleSettings, progress: bool = True) -> tuple[ColdCalibration, dict]:
    """Stage 4: the ``ColdCalibration`` with the best tune NDCG@20 over the settings' grids (sources x
    per-view scales x size priors), then over the offsets with the rest fixed. The identity is tried
    first and only a strictly better candidate replaces the best so far (offset 0 is the first of the
    second pass), so the result is never below the gate alone on tune. ``users``: [n_users, 2·dim]."""
    identity = ColdCalibration()
    grid = [identity] + [ColdCalibration(bundle_source=src, bundle_view=b, item_view=i, log_size=a)
                         for src, b, i, a in itertools.product(settings.calibration_sources, settings.calibration_view_grid,
                                                               settings.calibration_view_grid, settings.calibration_size_grid)]
    # each candidate's scores on the tune users are a combination of a few products, computed once
    d, cold = anchor.shape[1], np.flatnonzero(data.bundle_counts() == 0)
    tune_users = np.unique(data.tune.users)
    Ut = users[tune_users]
    base = Ut @ gated.T
    parts = {"gate": Ut[:, :d] @ gated[cold, :d].T, "anchor": Ut[:, :d] @ anchor[cold].T}
    item_part = Ut[:, d:] @ gated[cold, d:].T
    log_size = np.log(np.maximum(data.bundle_sizes()[cold], 1))
    row = np.full(data.n_users, -1)
    row[tune_users] = np.arange(len(tune_users))

    def scorer(c: ColdCalibration):
        def scores(us):
            r = row[us]
            out = base[r].copy()
            out[:, cold] = (c.bundle_view * parts[c.bundle_source][r] + c.item_view * item_part[r]
                            + c.log_size * log_size + c.offset)
            return out
        return scores

    def search(candidates: list[ColdCalibration], desc: str) -> tuple[ColdCalibration, list[float]]:
        tried = [float(evaluate(data, data.tune, scorer(c))["ndcg@20"]) for c in tqdm(candidates, desc=desc, disable=not progress)]
        return candidates[int(np.argmax(tried))], tried  # the first maximum: an earlier candidate wins a tie

    best, tried = search(grid, f"cold calibration ({data.scenario}, tune)")
    warm_scores = base[:, np.setdiff1d(np.arange(data.n_bundles), cold)]
    spread = float(warm_scores.std()) if warm_scores.size else 1.0
    offsets = [best] + [best.model_copy(update={"offset": round(k * spread, 6)}) for k in settings.calibration_offset_grid if k != 0]
    best, tried_offsets = search(offsets, f"cold offset ({data.scenario}, tune)")
    return best, {"tune_ndcg@20": max(tried_offsets), "identity_tune_ndcg@20": tried[0], "tried": len(grid) + len(offsets),
                  "offset_unit": spread, "tune_ndcg@20_without_offset": tried_offsets[0]}
