"""Small helpers every training loop shares: seeding for bit-reproducible runs, and BPR."""

from __future__ import annotations

import random

import numpy as np
import torch
import torch.nn.functional as F


def seed_everything(seed: int) -> np.random.Generator:
    """Seed python, numpy and torch, and make torch deterministic; returns a numpy generator."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)
    return np.random.default_rng(seed)


def bpr_loss(pos_scores: torch.Tensor, neg_scores: torch.Tensor) -> torch.Tensor:
    """Bayesian personalised ranking: mean of -ln sigma(s_ui - s_uj)."""
    return -F.logsigmoid(pos_scores - neg_scores).mean()
