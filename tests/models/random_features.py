"""Random content features in the shapes the generator tests use (text 8-d with 3 layers, image 6-d with
a 5-d stage output, both modalities present), shared by the generator and selection tests, and a tiny split with an
ID space over them for the content models' trainings."""

import numpy as np

from models.features import Features


def random_features(n: int, seed: int) -> Features:
    rng = np.random.default_rng(seed)
    return Features(
        rng.standard_normal((n, 8), dtype=np.float32),
        rng.standard_normal((n, 6), dtype=np.float32),
        rng.standard_normal((n, 3, 8), dtype=np.float32),
        rng.standard_normal((n, 5), dtype=np.float32),
        np.ones(n, bool),
        np.ones(n, bool),
    )


def tiny_split_and_features(seed: int = 0):
    """60 items with random content, 40 users clicking the items whose text points their way."""
    from models.data import Dataset
    from models.split import cold_start_split

    rng = np.random.default_rng(seed)
    n_items, n_users, d = 60, 40, 4
    feats = random_features(n_items, seed)
    taste = rng.standard_normal((n_users, 8)).astype(np.float32)
    users, items = np.nonzero(taste @ feats.text.T > 1.0)
    ds = Dataset(
        "tiny",
        [str(i) for i in range(n_items)],
        [""] * n_items,
        [None] * n_items,
        [str(u) for u in range(n_users)],
        users.astype(np.int64),
        items.astype(np.int64),
    )
    user_emb = rng.standard_normal((n_users, d)).astype(np.float32)
    item_emb = rng.standard_normal((n_items, d)).astype(np.float32)
    return cold_start_split(ds, seed), feats, user_emb, item_emb
