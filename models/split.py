"""The item cold-start split (MAMEX §4.1.1): warm / validation-cold / test-cold items, the warm items' interactions
split again, validation's stop / select / decide parts; and the split of all the data a served package is refit on."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from models.data import Dataset, Interactions


@dataclass
class ColdStartSplit:
    """Item cold-start split (MAMEX §4.1.1) plus a held-out slice of warm interactions.

    Items are split warm / validation-cold / test-cold; every interaction of a cold item is removed
    from training. Warm items' interactions are split again train / warm-val / warm-test, for the
    warm and all-items scenarios.

    The validation-cold items are split once more (``validation``): a "stop" part that every content
    model early-stops on, and a disjoint "select" part that chooses between the trained candidates
    (generator modalities, the served expert). A candidate's score on the items it stopped on is
    inflated by a different amount for each candidate, so choosing on them picks the luckiest, not
    the best (issue 21). Without a select part (``val_select_items`` None) both are every
    validation-cold item.
    """

    warm_items: np.ndarray
    val_items: np.ndarray
    test_items: np.ndarray
    train: Interactions
    warm_val: Interactions
    warm_test: Interactions
    cold_val: Interactions
    cold_test: Interactions
    seed: int
    val_select_items: np.ndarray | None = None
    decide_items: np.ndarray | None = None
    cold_decide: Interactions | None = None

    def validation(self, part: str = "stop") -> tuple[np.ndarray, Interactions]:
        """Validation-cold items and their interactions: "stop" (early stopping), "select" (choosing
        between trained candidates) or "all"."""
        if part not in ("stop", "select", "all"):
            raise ValueError(f"unknown validation part {part!r}")
        if part == "all" or self.val_select_items is None:
            return self.val_items, self.cold_val
        chosen = np.isin(self.val_items, self.val_select_items)
        items = self.val_items[chosen if part == "select" else ~chosen]
        keep = np.isin(self.cold_val.items, items)
        return items, Interactions(self.cold_val.users[keep], self.cold_val.items[keep])

    def restrict_warm(self, allowed: np.ndarray) -> "ColdStartSplit":
        """The same split with only the warm items where ``allowed`` (a bool per item) is set: the others (items a
        given ID space has no vector for) are neither warm nor cold, and their interactions leave every part."""
        dropped = self.warm_items[~allowed[self.warm_items]]
        if not len(dropped):
            return self

        def keep(inter: Interactions) -> Interactions:
            mask = ~np.isin(inter.items, dropped)
            return Interactions(inter.users[mask], inter.items[mask])

        return replace(
            self,
            warm_items=self.warm_items[allowed[self.warm_items]],
            train=keep(self.train),
            warm_val=keep(self.warm_val),
            warm_test=keep(self.warm_test),
        )


def _ratio_cuts(count: int, ratios: tuple[float, float, float]) -> tuple[int, int]:
    total = sum(ratios)
    a = int(round(count * ratios[0] / total))
    b = a + int(round(count * ratios[1] / total))
    return a, b


def cold_start_split(
    ds: Dataset, seed: int, ratios=(0.8, 0.1, 0.1), select_share: float = 0.0, decide_share: float = 0.0
) -> ColdStartSplit:
    """Seeded split; the same (dataset, seed, ratios, select_share, decide_share) always gives the same split.
    ``select_share`` of the validation-cold items become its "select" part (0: none, choose on the
    early-stopping items); the rest of the split does not depend on it. ``decide_share`` of them are first
    set aside as the "decide" part (``decide_items``, ``cold_decide``): cold items that neither training,
    early stopping, selection nor calibration sees, scored only to decide a default between two trainings
    (``bench/decide_defaults.py``); warm items, test items and every interaction split do not depend on it."""
    rng = np.random.default_rng(seed)
    perm = rng.permutation(ds.n_items)
    a, b = _ratio_cuts(ds.n_items, ratios)
    warm, val, test = np.sort(perm[:a]), np.sort(perm[a:b]), np.sort(perm[b:])
    decide = _held_part(val, seed, decide_share, salt=22)
    if decide is not None:
        val = np.setdiff1d(val, decide)
    role = np.zeros(ds.n_items, dtype=np.int8)  # 0 warm, 1 val-cold, 2 test-cold, 3 decide
    role[val], role[test] = 1, 2
    if decide is not None:
        role[decide] = 3
    r = role[ds.items]

    def pick(mask: np.ndarray) -> Interactions:
        return Interactions(ds.users[mask], ds.items[mask])

    warm_idx = np.flatnonzero(r == 0)
    warm_idx = warm_idx[rng.permutation(len(warm_idx))]
    wa, wb = _ratio_cuts(len(warm_idx), ratios)
    masks = []
    for sl in (warm_idx[:wa], warm_idx[wa:wb], warm_idx[wb:]):
        m = np.zeros(len(ds.items), dtype=bool)
        m[sl] = True
        masks.append(m)
    return ColdStartSplit(
        warm_items=warm,
        val_items=val,
        test_items=test,
        train=pick(masks[0]),
        warm_val=pick(masks[1]),
        warm_test=pick(masks[2]),
        cold_val=pick(r == 1),
        cold_test=pick(r == 2),
        seed=seed,
        val_select_items=_held_part(val, seed, select_share, salt=21),
        decide_items=decide,
        cold_decide=None if decide is None else pick(r == 3),
    )


def _held_part(val: np.ndarray, seed: int, share: float, salt: int) -> np.ndarray | None:
    """``share`` of the validation-cold items drawn with their own seeded stream (None when that is none or all)."""
    count = int(round(len(val) * share))
    if count == 0 or count == len(val):
        return None
    return np.sort(np.random.default_rng([seed, salt]).choice(val, count, replace=False))


def all_data_split(ds: Dataset, warm: np.ndarray, seed: int) -> ColdStartSplit:
    """No split at all, for a refit on everything the data holds (``models.items.refit``): ``warm`` items (sorted
    indices) and every positive of theirs to train on; no validation, test or held-out interactions."""
    keep = np.isin(ds.items, warm)
    none, empty = Interactions(np.zeros(0, np.int64), np.zeros(0, np.int64)), np.zeros(0, np.int64)
    return ColdStartSplit(
        warm_items=np.asarray(warm, np.int64),
        val_items=empty,
        test_items=empty,
        train=Interactions(ds.users[keep], ds.items[keep]),
        warm_val=none,
        warm_test=none,
        cold_val=none,
        cold_test=none,
        seed=seed,
    )
