"""Youshu bundles as released with CoHeat (WWW 2024) and used by MoDiffE (Table 3).

Files (tab-separated index pairs): ``Youshu_data_size.txt`` ("users bundles items"),
``bundle_item.txt`` (b i), ``user_item.txt`` (u i), both shared by every scenario, and
``{cold,warm,all}/user_bundle_{train,tune,test}.txt`` (u b). The splits are used as given, never
re-split. In ``cold/`` the tune and test bundles never appear in training.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.data import Interactions

SCENARIOS = ("cold", "warm", "all")


@dataclass
class BundleData:
    scenario: str
    n_users: int
    n_bundles: int
    n_items: int
    bundle_item: Interactions  # .users holds bundle indices, .items item indices
    user_item: Interactions
    train: Interactions  # user-bundle; .items holds bundle indices
    tune: Interactions
    test: Interactions

    @property
    def warm_bundles(self) -> np.ndarray:
        """Bundles with at least one training interaction (B-int warm)."""
        return np.unique(self.train.items)

    def bundle_counts(self) -> np.ndarray:
        return np.bincount(self.train.items, minlength=self.n_bundles)

    def bundle_sizes(self) -> np.ndarray:
        """Member items of each bundle."""
        return np.bincount(self.bundle_item.users, minlength=self.n_bundles)

    def item_counts(self) -> np.ndarray:
        return np.bincount(self.user_item.items, minlength=self.n_items)

    def members(self) -> list[np.ndarray]:
        """Item indices of each bundle."""
        order = np.argsort(self.bundle_item.users, kind="stable")
        cuts = np.cumsum(self.bundle_sizes())[:-1]
        return np.split(self.bundle_item.items[order], cuts)


def _pairs(path: Path) -> Interactions:
    a = np.loadtxt(path, dtype=np.int64, ndmin=2)
    return Interactions(a[:, 0].copy(), a[:, 1].copy())


def load_youshu(path: Path, scenario: str = "cold") -> BundleData:
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown Youshu scenario {scenario!r}; one of {SCENARIOS}")
    path = Path(path)
    n_users, n_bundles, n_items = (int(x) for x in (path / "Youshu_data_size.txt").read_text().split()[:3])
    d = BundleData(
        scenario,
        n_users,
        n_bundles,
        n_items,
        _pairs(path / "bundle_item.txt"),
        _pairs(path / "user_item.txt"),
        *(_pairs(path / scenario / f"user_bundle_{part}.txt") for part in ("train", "tune", "test")),
    )
    for name, x, n_a, n_b in (
        ("bundle_item", d.bundle_item, n_bundles, n_items),
        ("user_item", d.user_item, n_users, n_items),
        ("train", d.train, n_users, n_bundles),
        ("tune", d.tune, n_users, n_bundles),
        ("test", d.test, n_users, n_bundles),
    ):
        if len(x) and (x.users.min() < 0 or x.users.max() >= n_a or x.items.min() < 0 or x.items.max() >= n_b):
            raise ValueError(f"{name}: an index is outside the sizes in Youshu_data_size.txt")
    return d
