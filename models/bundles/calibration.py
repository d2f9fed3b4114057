"""Stage 4 of the bundle model: the cold calibration (``coldproxy.bundle_package.ColdCalibration``).

For bundles without interactions: a scale per view, the bundle view's source (the gate's or the
anchor itself) and a size prior α·log(members), chosen on the tune split by grid search, the identity
included (so never worse there than the gate alone). Without the calibration cold bundles carry no
popularity: their gate-bounded vectors sit on another scale than warm ones, and log(size) (r ≈ 0.45
with a bundle's interactions on Youshu) is averaged away by every path that builds a cold vector.
Then, the rest fixed, an offset β is added to every such bundle's score, in units of the spread of
the tune users' scores of warm bundles: it only moves new bundles against warm ones, so it matters
where tune mixes both (the all scenario).

Last, the per-user placement: one offset β cannot place new bundles for every user, since users'
scores of new and of warm bundles sit on scales of their own (on Youshu's all split new bundles rank
0.24 Recall@20 among themselves, warm ones 0.30, and the mixed list 0.14). Each user gets an offset
t_u that aligns their k-th best new bundle with their (20 - k)-th best warm one (train bundles
excluded, the new ones those without interactions at training), so their top 20 holds k new bundles;
k is chosen on the tune split, 0 (off) tried first. The new bundles t_u is fitted against are every one in
the catalogue (the test split's too: over their vectors, never their labels), or, inductively, only those new in
the tune split (``calibration_placement_pool``).

Served bundle vector: [g_B·r_b^B ; g_I·r_b^I ; 0 ; 0] for a bundle with interactions, the calibrated
[c_B·r_b^B ; c_I·r_b^I ; α·log|b| + β ; 1] for one without; user vector [r_u^B ; r_u^I ; 1 ; t_u], so
y_ub is one inner product and FAISS ranks bundles like items.
"""

from __future__ import annotations

import itertools

import numpy as np
from tqdm.auto import tqdm

from coldproxy.bundle_package import ColdCalibration, with_columns
from coldproxy.config import BundleSettings
from models.bundles.backbone import evaluate
from models.bundles.data import BundleData
from models.evaluate import top_columns


def served_vectors(data: BundleData, gated: np.ndarray, anchor: np.ndarray, calibration: ColdCalibration) -> np.ndarray:
    """[n_bundles, 2·dim + 2]: bundles with interactions as the gate gives them (last two components 0),
    the others through ``calibration`` -- what the package serves for a POSTed bundle."""
    out = with_columns(gated, 0.0, 0.0)
    cold = data.bundle_counts() == 0
    out[cold] = calibration.cold(gated[cold], anchor[cold], data.bundle_sizes()[cold])
    return out


def served_users(users: np.ndarray, placement: np.ndarray | float = 0.0) -> np.ndarray:
    """[n_users, 2·dim] and their placement offsets -> the served [n_users, 2·dim + 2]."""
    return with_columns(users, 1.0, placement)


def placement_tops(
    data: BundleData,
    users: np.ndarray,
    served: np.ndarray,
    length: int,
    chunk: int = 2048,
    pool: np.ndarray | None = None,
):
    """Each user's ``length`` best scores (descending) of warm bundles outside their training ones, and of
    bundles without interactions (of ``pool``, a mask, when given): two [n_users, length] arrays (-inf where a
    pool runs out)."""
    warm = data.bundle_counts() > 0
    cold = ~warm if pool is None else pool & ~warm
    U = served_users(users)
    warm_top, cold_top = np.full((2, data.n_users, length), -np.inf, np.float32)
    for a in range(0, data.n_users, chunk):
        s = U[a : a + chunk] @ served.T
        seen = (data.train.users >= a) & (data.train.users < a + chunk)
        s[data.train.users[seen] - a, data.train.items[seen]] = -np.inf
        for scores, out in ((s[:, warm], warm_top), (s[:, cold], cold_top)):
            if scores.shape[1]:
                best = np.take_along_axis(scores, top_columns(scores, length), axis=1)
                out[a : a + chunk, : best.shape[1]] = best
    return warm_top, cold_top


def placement_pool(data: BundleData, which: str) -> np.ndarray | None:
    """The bundles without interactions the placement is fitted against: every one in the catalogue at training
    (``all_new``: None), or only those new in the tune split (``tune_new``, inductive: never the test split's)."""
    if which == "all_new":
        return None
    return np.isin(np.arange(data.n_bundles), data.tune.items)


def placement_offsets(warm_top: np.ndarray, cold_top: np.ndarray, k: int) -> np.ndarray:
    """t_u that lifts each user's k-th best new bundle onto their (length - k)-th best warm one; 0 for a
    user with too few of either."""
    t = warm_top[:, warm_top.shape[1] - k - 1] - cold_top[:, k - 1]
    return np.where(np.isfinite(t), t, 0.0).astype(np.float32)


def calibrate_cold(
    data: BundleData,
    users: np.ndarray,
    gated: np.ndarray,
    anchor: np.ndarray,
    settings: BundleSettings,
    progress: bool = True,
) -> tuple[ColdCalibration, np.ndarray, dict]:
    """Stage 4: the ``ColdCalibration`` with the best tune NDCG@20 over the settings' grids (sources x
    per-view scales x size priors), then over the offsets with the rest fixed, then over the per-user
    placement's k, and every user's placement offset [n_users] (zeros when off). In each pass the
    identity is tried first and only a strictly better candidate replaces the best so far (offset 0,
    placement off), so the result is never below the gate alone on tune. ``users``: [n_users, 2·dim]."""
    identity = ColdCalibration()
    grid = [identity] + [
        ColdCalibration(bundle_source=src, bundle_view=b, item_view=i, log_size=a)
        for src, b, i, a in itertools.product(
            settings.calibration_sources,
            settings.calibration_view_grid,
            settings.calibration_view_grid,
            settings.calibration_size_grid,
        )
    ]
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

    length = settings.calibration_list_length
    placements = {0: np.zeros(data.n_users, np.float32)}

    def scorer(c: ColdCalibration):
        t = placements[c.cold_slots]

        def scores(us):
            r = row[us]
            out = base[r].copy()
            out[:, cold] = (
                c.bundle_view * parts[c.bundle_source][r]
                + c.item_view * item_part[r]
                + c.log_size * log_size
                + c.offset
                + t[us, None]
            )
            return out

        return scores

    def search(candidates: list[ColdCalibration], desc: str) -> tuple[ColdCalibration, list[float]]:
        tried = [
            float(evaluate(data, data.tune, scorer(c))["ndcg@20"])
            for c in tqdm(candidates, desc=desc, disable=not progress)
        ]
        return candidates[int(np.argmax(tried))], tried  # the first maximum: an earlier candidate wins a tie

    best, tried = search(grid, f"cold calibration ({data.scenario}, tune)")
    warm_scores = base[:, np.setdiff1d(np.arange(data.n_bundles), cold)]
    spread = float(warm_scores.std()) if warm_scores.size else 1.0
    offsets = [best] + [
        best.model_copy(update={"offset": round(k * spread, 6)}) for k in settings.calibration_offset_grid if k != 0
    ]
    best, tried_offsets = search(offsets, f"cold offset ({data.scenario}, tune)")
    slots = list(settings.calibration_cold_slots_grid)  # each in 1..length - 1 (BundleSettings checks)
    if slots:
        warm_top, cold_top = placement_tops(
            data,
            users,
            served_vectors(data, gated, anchor, best),
            length,
            pool=placement_pool(data, settings.calibration_placement_pool),
        )
        placements |= {k: placement_offsets(warm_top, cold_top, k) for k in slots}
    placed = [best] + [best.model_copy(update={"cold_slots": k, "list_length": length}) for k in slots]
    best, tried_placed = search(placed, f"cold placement ({data.scenario}, tune)")
    return (
        best,
        placements[best.cold_slots],
        {
            "tune_ndcg@20": max(tried_placed),
            "identity_tune_ndcg@20": tried[0],
            "tried": len(grid) + len(offsets) + len(placed),
            "offset_unit": spread,
            "tune_ndcg@20_without_offset": tried_offsets[0],
            "tune_ndcg@20_without_placement": tried_placed[0],
            "tune_ndcg@20_by_cold_slots": dict(zip([0] + slots, tried_placed)),
        },
    )
