"""Random content features in the shapes the generator tests use (text 8-d with 3 layers, image 6-d with
a 5-d stage output, both modalities present), shared by the generator and selection tests."""

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
