"""Calibration of new items' vectors to the warm items' score scale (issue 16).

A content proxy lives in the ID space but not on its scale: beside warm ID embeddings a new item
scored far lower, so a ranking that mixes new and warm candidates never showed it (all-items
scenario no better than the proxy alone). The calibration is an affine map of the content
experts, v' = a·v + b·c, with c the mean warm ID embedding (the popularity direction) and (a, b)
chosen on the validation split only: the pair that maximises NDCG@20 of the validation all-items
ranking (warm + validation-cold candidates; warm-validation and validation-cold positives;
training interactions excluded). Within the cold items the order is unchanged (u·b·c is the same
for every item of a user), so cold-only metrics do not move; warm items keep their ID embeddings.

Served: baked into the package's graphs -- the proxy graph when there is no gate, else the gate
graph, on its content experts only (``CalibratedProxy``, ``CalibratedGate``), so an item that
warms up still moves to its own ID embedding unscaled.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from models.data import Interactions
from models.evaluate import evaluate_candidates
from models.split import ColdStartSplit

SCALES = (0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 4.0, 6.0)
SHIFTS = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0)
FILE = "calibration.json"


@dataclass
class Calibration:
    scale: float
    shift: float
    direction: list[float]  # c: the mean warm ID embedding

    def apply(self, vectors: np.ndarray) -> np.ndarray:
        return (self.scale * vectors + self.shift * np.asarray(self.direction, np.float32)).astype(np.float32)

    def save(self, work_dir: Path) -> None:
        (Path(work_dir) / FILE).write_text(json.dumps(asdict(self)))

    @classmethod
    def load(cls, work_dir: Path) -> "Calibration | None":
        path = Path(work_dir) / FILE
        return cls(**json.loads(path.read_text())) if path.exists() else None


def validation_all_ndcg(user_emb: np.ndarray, item_emb: np.ndarray, split: ColdStartSplit) -> float:
    """NDCG@20 of the validation all-items ranking: warm + validation-cold candidates."""
    positives = Interactions(
        np.concatenate([split.warm_val.users, split.cold_val.users]),
        np.concatenate([split.warm_val.items, split.cold_val.items]),
    )
    candidates = np.concatenate([split.warm_items, split.val_items])
    return evaluate_candidates(user_emb, item_emb, candidates, positives, split.train, (20,))["ndcg@20"]


def fit_calibration(
    user_emb: np.ndarray, item_emb: np.ndarray, cold_emb: np.ndarray, split: ColdStartSplit
) -> tuple[Calibration, dict]:
    """(a, b) on the validation split. ``cold_emb``: the uncalibrated served vectors, read at the
    validation-cold rows; ``item_emb``: the ID embeddings (warm rows used)."""
    direction = item_emb[split.warm_items].mean(0).astype(np.float32)
    val = split.val_items
    served = item_emb.copy()
    grid = {}
    for scale in SCALES:
        for shift in SHIFTS:
            served[val] = scale * cold_emb[val] + shift * direction
            grid[(scale, shift)] = validation_all_ndcg(user_emb, served, split)
    # ties go to the smaller change
    scale, shift = max(grid, key=lambda k: (grid[k], -abs(k[0] - 1.0) - k[1]))
    log = {
        "scale": scale,
        "shift": shift,
        "chosen_on": "validation all-items NDCG@20",
        "val_all_ndcg20": grid[(scale, shift)],
        "val_all_ndcg20_uncalibrated": grid[(1.0, 0.0)],
        "grid": {f"{a:g},{b:g}": v for (a, b), v in grid.items()},
    }
    return Calibration(float(scale), float(shift), direction.tolist()), log


class _Calibrate(nn.Module):
    def __init__(self, calibration: Calibration):
        super().__init__()
        self.register_buffer("scale", torch.tensor(calibration.scale, dtype=torch.float32))
        self.register_buffer("shift", calibration.shift * torch.tensor(calibration.direction, dtype=torch.float32))

    def forward(self, vectors: torch.Tensor) -> torch.Tensor:
        return self.scale * vectors + self.shift


class CalibratedProxy(nn.Module):
    """The generator's serving graph with its proxy calibrated (packages without a gate)."""

    def __init__(self, serving: nn.Module, calibration: Calibration):
        super().__init__()
        self.serving, self.calibrate = serving, _Calibrate(calibration)

    def forward(self, text, image, text_layers, image_stages, mask):
        proxy, alpha = self.serving(text, image, text_layers, image_stages, mask)
        return self.calibrate(proxy), alpha


class CalibratedGate(nn.Module):
    """The cold-aware gate with its content experts (proxy, diffusion, anchor) calibrated; the ID expert as
    is. For a new item the weights sum to one over the content experts, so this is the calibration of
    the served mix that ``fit_calibration`` chose."""

    def __init__(self, gate: nn.Module, calibration: Calibration):
        super().__init__()
        self.gate, self.calibrate = gate, _Calibrate(calibration)
        self.lin = gate.lin  # the graph's input and output widths, for export

    def forward(self, features, available, id_embedding, *content):
        return self.gate(features, available, id_embedding, *(self.calibrate(e) for e in content))


class UnitLength(nn.Module):
    """A serving graph whose first output (the served vector) is made unit-length: a cosine ID space's new items,
    so that an inner product with a (unit) user vector is the recommender's cosine. A zero vector stays zero."""

    def __init__(self, graph: nn.Module):
        super().__init__()
        self.graph = graph
        if hasattr(graph, "lin"):
            self.lin = graph.lin  # a gate's input and output widths, for export

    def forward(self, *inputs):
        vector, *rest = self.graph(*inputs)
        return (vector / vector.norm(dim=-1, keepdim=True).clamp_min(1e-12), *rest)
