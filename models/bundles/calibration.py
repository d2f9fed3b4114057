"""Stage 4 of the bundle model: the cold calibration (``coldproxy.bundle_package.ColdCalibration``).

For bundles without interactions: a scale per view, the bundle view's source (the gate's or the
anchor itself) and a size prior α·log(members), chosen on the tune split by grid search, the identity
included (so never worse there than the gate alone). Without it cold bundles carry no popularity:
their gate-bounded vectors sit on another scale than warm ones, and log(size) (r ≈ 0.45 with a
bundle's interactions on Youshu) is averaged away by every path that builds a cold vector.

Served bundle vector: [g_B·r_b^B ; g_I·r_b^I ; 0] for a bundle with interactions, the calibrated
[c_B·r_b^B ; c_I·r_b^I ; α·log|b|] for one without; user vector [r_u^B ; r_u^I ; 1], so y_ub is one
inner product and FAISS ranks bundles like items.
"""

from __future__ import annotations

import itertools

import numpy as np
from tqdm.auto import tqdm

from coldproxy.bundle_package import ColdCalibration, with_bias_column
from coldproxy.config import BundleSettings
from models.bundles.data import BundleData
from models.bundles.model import evaluate


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
    per-view scales x size priors). The identity is tried first and only a strictly better one replaces
    it, so the result is never below the gate alone on tune. ``users``: [n_users, 2·dim] (no 1 column)."""
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
            out[:, cold] = c.bundle_view * parts[c.bundle_source][r] + c.item_view * item_part[r] + c.log_size * log_size
            return out
        return scores

    tried = [float(evaluate(data, data.tune, scorer(c))["ndcg@20"])
             for c in tqdm(grid, desc=f"cold calibration ({data.scenario}, tune)", disable=not progress)]
    best = int(np.argmax(tried))  # first maximum: the identity wins a tie
    return grid[best], {"tune_ndcg@20": tried[best], "identity_tune_ndcg@20": tried[0], "tried": len(grid)}
