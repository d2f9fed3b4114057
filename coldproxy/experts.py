"""The cold-aware gate's contract, shared by training (models/gate.py) and the service: the experts'
order and the gate's input features. numpy only: the service imports this without torch."""

from __future__ import annotations

import numpy as np

EXPERTS = ("id", "proxy", "diffusion", "anchor")  # anchor: content-kNN, the mean ID embedding of similar warm items
CONTENT_EXPERTS = EXPERTS[1:]  # what a new item has
GATE_FEATURES = ("log1p_count", "has_text", "has_image")


def cold_features(counts: np.ndarray, modality_mask: np.ndarray) -> np.ndarray:
    """[N, 3]: log(1 + interaction count), text present, image present."""
    return np.concatenate([np.log1p(np.asarray(counts, np.float32))[:, None], modality_mask], axis=1).astype(np.float32)
