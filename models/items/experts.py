"""Stages 3 and 4 of the pipeline (MoDiffE Alg. 3), on top of a trained ID model and generator:
the diffusion expert conditioned on the item's content proxy, started from its similarity anchor,
then the cold-aware gate over {ID embedding, content proxy, diffusion proxy}.

``Experts`` holds every item's expert outputs (row = item index) so the benchmark can rescore
variants (another sampler, no gate) without retraining.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from coldproxy.anchors import AnchorIndex, content_vectors
from models.data import ColdStartSplit
from models.diffusion import Denoiser, train_diffusion
from models.evaluate import validation_cold_ndcg
from models.features import Features
from coldproxy.experts import cold_features
from models.gate import ColdAwareGate, train_gate
from models.samplers import sample, sampler_kwargs


@dataclass
class Experts:
    proxy: np.ndarray  # [N, d] content proxy of every item
    anchor: np.ndarray  # [N, d] similarity anchor (self excluded for warm items)
    diffusion: np.ndarray  # [N, d]
    counts: np.ndarray  # [N] training interactions
    features: np.ndarray  # [N, 3] cold-aware gate features
    denoiser: Denoiser
    gate: ColdAwareGate | None
    logs: dict

    def stacked(self, item_emb: np.ndarray, warm: np.ndarray, n_items: int) -> tuple[np.ndarray, np.ndarray]:
        available = np.zeros((n_items, 3), np.float32)
        available[:, 1:] = 1.0
        available[warm, 0] = 1.0
        return np.stack([item_emb, self.proxy, self.diffusion], axis=1), available


def anchors_for(features: Features, item_emb: np.ndarray, warm: np.ndarray, neighbours: int) -> np.ndarray:
    vec = content_vectors(features.text, features.image, features.mask)
    exclude = -np.ones(len(vec), np.int64)
    exclude[warm] = np.arange(len(warm))
    return AnchorIndex(vec[warm], item_emb[warm], neighbours).anchors(vec, exclude)


def fit_experts(features: Features, split: ColdStartSplit, user_emb: np.ndarray, item_emb: np.ndarray, proxy_emb: np.ndarray, settings,
                progress: bool = True, gate: bool = True, from_noise: bool = False) -> Experts:
    """``proxy_emb``: the generator's output for every item."""
    n, warm = len(proxy_emb), split.warm_items
    anchor = anchors_for(features, item_emb, warm, settings.anchor_n)
    kw = sampler_kwargs(settings) | {"from_noise": from_noise, "seed": settings.seed}
    probe = np.zeros_like(item_emb)

    def validate(model):
        v = split.val_items
        probe[v] = sample(model, anchor[v], proxy_emb[v], **kw)
        return validation_cold_ndcg(user_emb, probe, split)

    denoiser, dlog = train_diffusion(item_emb[warm], proxy_emb[warm], settings, validate, progress)
    diffusion = sample(denoiser, anchor, proxy_emb, **kw)
    counts = np.bincount(split.train.items, minlength=n).astype(np.float32)
    ex = Experts(proxy_emb, anchor, diffusion, counts, cold_features(counts, features.mask), denoiser, None, {"diffusion": dlog})
    if gate:
        stacked, available = ex.stacked(item_emb, warm, n)
        ex.gate, ex.logs["gate"] = train_gate(stacked, available, ex.features, user_emb, split, settings, progress)
    return ex


def served_cold(ex: Experts, items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Gated embedding and expert weights for cold items (no ID embedding, count 0 at serving time);
    without a gate, the plain average of the two proxies (MoDiffE's "w/o moe")."""
    import torch

    if ex.gate is None:
        return 0.5 * (ex.proxy[items] + ex.diffusion[items]), np.tile([0.0, 0.5, 0.5], (len(items), 1)).astype(np.float32)
    feats = cold_features(np.zeros(len(items)), ex.features[items, 1:])
    avail = np.tile(np.array([0.0, 1.0, 1.0], np.float32), (len(items), 1))
    with torch.no_grad():
        emb, w = ex.gate(*(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)) for x in
                           (feats, avail, np.zeros_like(ex.proxy[items]), ex.proxy[items], ex.diffusion[items])))
    return emb.numpy(), w.numpy()
