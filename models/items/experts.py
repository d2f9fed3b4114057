"""Stages 3 and 4 of the pipeline (MoDiffE Alg. 3), on top of a trained ID model and generator:
the diffusion expert conditioned on the item's content proxy, started from its similarity anchor
(with ``sampler_select``, the sampler's steps and start chosen on validation: ``choose_sampler``),
then the cold-aware gate over {ID embedding, content proxy, diffusion proxy, similarity anchor}, and
the choice of what a new item is served, made on validation (``select_served``): the generator's proxy, the
simplest, unless a costlier expert or the gate's mix clears the floor of ``models.decision.bootstrap_clears`` over
it (issue 57: on a few hundred validation-cold items, a choice inside the noise is not a gain).

``Experts`` holds every item's expert outputs (row = item index) so the benchmark can rescore
variants (another sampler, no gate) without retraining.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import torch
from torch import nn

from coldproxy.anchors import AnchorIndex, content_vectors
from coldproxy.experts import CONTENT_EXPERTS, EXPERTS, cold_features
from models.decision import bootstrap_clears
from models.diffusion import Denoiser, train_diffusion
from models.evaluate import validation_cold_ndcg, validation_cold_ndcg_per_user
from models.features import Features
from models.gate import ColdAwareGate, mix, train_gate
from models.samplers import SAMPLER_KEYS, sample, sampler_kwargs
from models.split import ColdStartSplit


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
    choice: str = "gate"  # what a new item is served: "gate" or one of CONTENT_EXPERTS
    sampler: dict = field(default_factory=dict)  # the diffusion expert's ``sample`` keywords (SAMPLER_KEYS)

    def stacked(self, item_emb: np.ndarray, warm: np.ndarray, n_items: int) -> tuple[np.ndarray, np.ndarray]:
        """[N, 4, d] experts in ``EXPERTS`` order and [N, 4] availability (the ID expert for warm rows only)."""
        available = np.ones((n_items, len(EXPERTS)), np.float32)
        available[:, 0] = 0.0
        available[warm, 0] = 1.0
        return np.stack([item_emb, self.proxy, self.diffusion, self.anchor], axis=1), available


SIMPLEST_FIRST = ("proxy", "anchor", "diffusion", "gate")  # the generator alone, then what each adds to it


class ServedGate(nn.Module):
    """The package's gate graph: the learned gate, except that an item without an ID embedding gets the
    chosen single expert when the validation choice is one (an item with one keeps the learned mix)."""

    def __init__(self, gate: ColdAwareGate, choice: str = "gate"):
        super().__init__()
        self.gate, self.lin, self.choice = gate, gate.lin, choice  # lin: the graph's widths, for export
        one_hot = torch.zeros(len(EXPERTS))
        if choice != "gate":
            one_hot[EXPERTS.index(choice)] = 1.0
        self.register_buffer("one_hot", one_hot)

    def forward(self, features, available, *experts):
        w = self.gate.weights(features, available)
        if self.choice != "gate":
            new = 1.0 - available[:, 0:1]
            w = new * self.one_hot + (1.0 - new) * w
        return mix(w, experts)


def anchors_for(features: Features, item_emb: np.ndarray, warm: np.ndarray, neighbours: int) -> np.ndarray:
    vec = content_vectors(features.text, features.image, features.mask)
    exclude = -np.ones(len(vec), np.int64)
    exclude[warm] = np.arange(len(warm))
    return AnchorIndex(vec[warm], item_emb[warm], neighbours).anchors(vec, exclude)


def fit_experts(
    features: Features,
    split: ColdStartSplit,
    user_emb: np.ndarray,
    item_emb: np.ndarray,
    proxy_emb: np.ndarray,
    settings,
    progress: bool = True,
    gate: bool = True,
    from_noise: bool = False,
    ranking: bool = True,
    chosen: dict | None = None,
) -> Experts:
    """``proxy_emb``: the generator's output for every item. Without ``ranking`` (a given space of item vectors
    only) the gate trains on MSE to the items' vectors instead of BPR (``models.gate.train_gate``). ``chosen`` (a
    refit on all the data: ``models.items.refit``): the evaluation's choices -- "diffusion_epochs", "gate_epochs",
    "sampler" -- used instead of validating."""
    n, warm = len(proxy_emb), split.warm_items
    anchor = anchors_for(features, item_emb, warm, settings.anchor_n)
    kw = sampler_kwargs(settings) | {"from_noise": from_noise, "seed": settings.seed}
    probe = np.zeros_like(item_emb)

    def validate(model):
        v = split.val_items
        probe[v] = sample(model, anchor[v], proxy_emb[v], **kw)
        return validation_cold_ndcg(user_emb, probe, split)

    if chosen is not None:
        kw |= chosen["sampler"]
        denoiser, dlog = train_diffusion(
            item_emb[warm], proxy_emb[warm], settings, None, progress, epochs=chosen["diffusion_epochs"]
        )
    else:
        denoiser, dlog = train_diffusion(item_emb[warm], proxy_emb[warm], settings, validate, progress)
    if chosen is None and settings.sampler_select and settings.sampler != "ddpm" and not from_noise:
        kw, dlog["sampler_validation"] = choose_sampler(denoiser, anchor, proxy_emb, user_emb, split, settings, kw)
    diffusion = sample(denoiser, anchor, proxy_emb, **kw)
    counts = np.bincount(split.train.items, minlength=n).astype(np.float32)
    ex = Experts(
        proxy_emb,
        anchor,
        diffusion,
        counts,
        cold_features(counts, features.mask),
        denoiser,
        None,
        {"diffusion": dlog},
        sampler={k: kw[k] for k in SAMPLER_KEYS},
    )
    if gate:
        stacked, available = ex.stacked(item_emb, warm, n)
        ex.gate, ex.logs["gate"] = train_gate(
            stacked,
            available,
            ex.features,
            user_emb,
            split,
            settings,
            progress,
            loss="bpr" if ranking else "mse",
            epochs=None if chosen is None else chosen["gate_epochs"],
        )
    return ex


def choose_sampler(
    denoiser: Denoiser,
    anchor: np.ndarray,
    proxy_emb: np.ndarray,
    user_emb: np.ndarray,
    split: ColdStartSplit,
    settings,
    kw: dict,
) -> tuple[dict, dict[str, float]]:
    """The sampler's steps S and start (fraction of T) from the settings' grids, chosen by validation-cold
    NDCG@20 of the diffusion expert on the split's "select" part; ties go to the configured ones.
    Returns (the chosen ``sample`` keywords, every grid point's score)."""
    v, probe = split.val_items, np.zeros_like(proxy_emb)
    configured = (kw["steps"], kw["t_start"] / settings.diffusion_T)
    grid = [configured] + [
        (s, t) for s in settings.sampler_steps_grid for t in settings.sampler_start_grid if (s, t) != configured
    ]
    scores = {}
    for steps, start in grid:
        probe[v] = sample(
            denoiser, anchor[v], proxy_emb[v], **(kw | {"steps": steps, "t_start": start * settings.diffusion_T})
        )
        scores[(steps, start)] = validation_cold_ndcg(user_emb, probe, split, "select")
    steps, start = max(grid, key=scores.__getitem__)
    tried = {f"S={s} start={t:g}": v for (s, t), v in scores.items()}
    return kw | {"steps": steps, "t_start": start * settings.diffusion_T}, tried


def served_cold(ex: Experts, items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Served embedding and expert weights for cold items (no ID embedding, count 0 at serving time):
    the gate's graph with ``ex.choice``; without a gate, the plain average of the two proxies
    (MoDiffE's "w/o moe")."""
    if ex.gate is None:
        return 0.5 * (ex.proxy[items] + ex.diffusion[items]), np.tile([0.0, 0.5, 0.5, 0.0], (len(items), 1)).astype(
            np.float32
        )
    feats = cold_features(np.zeros(len(items)), ex.features[items, 1:])
    avail = np.tile(np.array([0.0] + [1.0] * len(CONTENT_EXPERTS), np.float32), (len(items), 1))
    with torch.no_grad():
        emb, w = ServedGate(ex.gate, ex.choice)(
            *(
                torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
                for x in (
                    feats,
                    avail,
                    np.zeros_like(ex.proxy[items]),
                    ex.proxy[items],
                    ex.diffusion[items],
                    ex.anchor[items],
                )
            )
        )
    return emb.numpy(), w.numpy()


def select_served(ex: Experts, user_emb: np.ndarray, split: ColdStartSplit) -> tuple[str, dict[str, float], dict]:
    """What a new item is served, on validation-cold NDCG@20 of the split's "select" part: the simplest candidate
    (``SIMPLEST_FIRST[0]``, the generator's proxy) unless a costlier one's paired per-user gain over it clears
    ``bootstrap_clears``' floor; of those that clear, the validation-best serves. Each is compared with the simplest,
    not with the one before it: chained, the gate had to clear over the diffusion expert when that one had cleared, and
    the diffusion expert served where the gate, clear of the proxy by more, scored higher. Returns (choice, every
    candidate's score, each costlier candidate's margin over the simplest)."""
    probe, v = np.zeros_like(ex.proxy), split.val_items
    per_user = {}
    for choice in SIMPLEST_FIRST:
        probe[v] = served_cold(replace(ex, choice=choice), v)[0]
        per_user[choice] = validation_cold_ndcg_per_user(user_emb, probe, split, "select")
    scores = {c: float(x.sum() / len(x)) if len(x) else 0.0 for c, x in per_user.items()}
    simplest = SIMPLEST_FIRST[0]
    margins = {c: {"against": simplest} | bootstrap_clears(per_user[simplest], per_user[c]) for c in SIMPLEST_FIRST[1:]}
    cleared = [simplest] + [c for c in SIMPLEST_FIRST[1:] if margins[c]["adopt"]]
    chosen = max(cleared, key=lambda c: scores[c])  # the simpler one wins a tie
    return chosen, scores, margins
