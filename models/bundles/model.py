"""MoDiffE for bundles on Youshu: dual-level two-view prior model, a diffusion expert per view,
and the cold-aware hierarchical gate (MoDiffE §3.2, §4.2-4.4).

* **Prior model** (stage 1, ``models.bundles.backbone``): CrossCBR-style two views, y_ub =
  r_u^B·r_b^B + r_u^I·r_b^I.
* **Composition features**: items embedded by LightGCN + BPR on the bundle-item graph; a bundle's
  condition is the mean of its members' (so a new bundle of known items has one at once).
* **Diffusion experts** (stage 2, models/diffusion.py): B view, x₀ = r_b^B of warm bundles, c =
  [composition, r_b^I]; I view at the item level, x₀ = r_i^I of items with user interactions,
  c = the item's composition embedding, then aggregated like the prior. Sampling starts from the
  similarity anchor (mean x₀ of the ``anchor_n`` nearest warm neighbours by condition, eq. 14).
* **Hierarchical gate** (stage 3): per view a softmax over {prior, diffusion} from cold-aware
  features (eq. 17-18), the B-view prior masked out for a bundle without interactions; over views a tanh output gate
  weighting each view's score (eq. 19-20); trained by BPR with pseudo-cold bundles (two positives of a user
  interpolated, B-view features 0, η per scenario, eq. 23), ranked against pseudo-cold and real warm negatives.

Stage 4 (the cold calibration) is ``models.bundles.calibration``; the pipeline and the served
vectors are ``models.bundles.train``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from coldproxy.anchors import AnchorIndex, unit_rows
from coldproxy.bundle_package import B_FEATURES, I_FEATURES, bundle_condition
from coldproxy.config import BundleSettings
from models.bundles.backbone import Prior, evaluate, mean_matrix, view_scores
from models.bundles.data import BundleData
from models.diffusion import train_diffusion
from models.gate import ColdAwareGate, PositivesByUser
from models.idmodel import LightGCN
from models.samplers import sample, sampler_kwargs
from models.training import EarlyStopping, bpr_loss, fit, seed_everything


def composition_features(data: BundleData, settings: BundleSettings, progress: bool = True) -> np.ndarray:
    """Item embeddings [n_items, dim] from LightGCN + BPR on the bundle-item graph (which bundle holds which item)."""
    rng = seed_everything(settings.seed)
    model = LightGCN(
        data.n_bundles, data.n_items, settings.dim, data.bundle_item.users, data.bundle_item.items, 1, csr=False
    )
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    bs, its = torch.from_numpy(data.bundle_item.users), torch.from_numpy(data.bundle_item.items)
    for _ in tqdm(
        range(settings.composition_epochs), desc="composition features (bundle-item BPR)", disable=not progress
    ):
        perm = torch.from_numpy(rng.permutation(len(bs)))
        for b in range(0, len(perm), 8192):
            idx = perm[b : b + 8192]
            B, I = model.embeddings()
            neg = torch.from_numpy(rng.integers(0, data.n_items, len(idx)))
            loss = bpr_loss((B[bs[idx]] * I[its[idx]]).sum(-1), (B[bs[idx]] * I[neg]).sum(-1))
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        return model.embeddings()[1].numpy().copy()


@dataclass
class ViewExperts:
    """Per view, the prior (e) and diffusion (d) bundle representations [n_bundles, dim], and the gate features."""

    eB: np.ndarray
    dB: np.ndarray
    eI: np.ndarray
    dI: np.ndarray
    aB: np.ndarray
    aI: np.ndarray


def cold_aware_features(data: BundleData, bundle_counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """B view: log(1 + the bundle's interactions); I view: fraction of members with user interactions
    and their mean log(1 + interactions)."""
    agg = mean_matrix(data.bundle_item, data.n_bundles, data.n_items)
    ic = torch.from_numpy(data.item_counts().astype(np.float32))[:, None]
    aI = torch.cat([torch.sparse.mm(agg, (ic > 0).float()), torch.sparse.mm(agg, torch.log1p(ic))], 1).numpy()
    return np.log1p(bundle_counts.astype(np.float32))[:, None], aI.astype(np.float32)


class HierarchicalGate(nn.Module):
    """View-layer softmax gates over {prior, diffusion} (eq. 17-18) and the tanh output-layer gate (eq. 19-20)."""

    def __init__(self, n_b: int = len(B_FEATURES), n_i: int = len(I_FEATURES), output_gate: bool = True):
        super().__init__()
        self.view_b, self.view_i = ColdAwareGate(n_b, 2), ColdAwareGate(n_i, 2)
        self.out = nn.Linear(n_b + n_i, 2)
        nn.init.zeros_(self.out.weight)
        nn.init.constant_(self.out.bias, 1.0)
        self.output_gate = output_gate

    def forward(self, aB, aI, eB, dB, eI, dI):
        """-> (served bundle vector [n, 2·dim], view weights [n, 2], expert weights B [n, 2], I [n, 2])."""
        one = torch.ones_like(aB[:, :1])  # shapes from the inputs, not len(): the ONNX graph keeps a dynamic batch
        both = torch.cat([one, one], 1)
        has_id = torch.cat([(aB[:, :1] > 0).float(), one], 1)  # a B-int cold bundle has no prior B vector
        wB, wI = self.view_b.weights(aB, has_id), self.view_i.weights(aI, both)
        rB = wB[:, 0:1] * eB + wB[:, 1:2] * dB
        rI = wI[:, 0:1] * eI + wI[:, 1:2] * dI
        g = torch.tanh(self.out(torch.cat([aB, aI], 1))) if self.output_gate else both
        return torch.cat([g[:, 0:1] * rB, g[:, 1:2] * rI], 1), g, wB, wI


def warm_anchors(cond: np.ndarray, emb: np.ndarray, warm: np.ndarray, neighbours: int) -> tuple[np.ndarray, np.ndarray]:
    """Similarity anchor of every row (mean ``emb`` of its ``n`` nearest warm rows by condition, itself
    excluded) and the rows that are not warm."""
    index = AnchorIndex(unit_rows(cond[warm]), emb[warm], neighbours)
    exclude = -np.ones(len(cond), np.int64)
    exclude[warm] = np.arange(len(warm))
    return index.anchors(unit_rows(cond), exclude), np.setdiff1d(np.arange(len(cond)), warm)


@dataclass
class ViewDiffusion:
    """Stage 2's output: the denoisers (B, I), every bundle's diffusion vector per view, every item's
    I-view diffusion vector (its prior where it has clicks), and every bundle's B-view condition and anchor."""

    denoisers: tuple
    dB: np.ndarray
    dI: np.ndarray
    item_diffusion: np.ndarray
    condition: np.ndarray
    anchor: np.ndarray
    log: dict


def fit_view_experts(
    data: BundleData, prior: Prior, comp: np.ndarray, settings: BundleSettings, progress: bool = True
) -> ViewDiffusion:
    """Stage 2: the two diffusion experts and every bundle's diffusion representation per view."""
    warm_b = data.warm_bundles
    aggd = mean_matrix(data.bundle_item, data.n_bundles, data.n_items).to_dense().numpy()
    cond_b = bundle_condition(aggd, comp, prior.iI)  # the condition: the members' mean, whatever the pooling
    pool = mean_matrix(data.bundle_item, data.n_bundles, data.n_items, settings.item_pooling).to_dense().numpy()
    warm_i = np.flatnonzero(data.item_counts() > 0)
    kw = sampler_kwargs(settings)

    def tune_ndcg(bB, bI):
        return evaluate(data, data.tune, lambda us: view_scores(us, prior.uB, bB, prior.uI, bI))["ndcg@20"]

    # B view: bundle level
    anchors_b, cold_b = warm_anchors(cond_b, prior.bB, warm_b, settings.anchor_n)

    def val_b(model):
        out = prior.bB.copy()
        out[cold_b] = sample(model, anchors_b[cold_b], cond_b[cold_b], **kw)
        return tune_ndcg(out, prior.bI)

    den_b, log_b = train_diffusion(prior.bB[warm_b], cond_b[warm_b], settings, val_b, progress, desc="diffusion B view")
    dB = sample(den_b, anchors_b, cond_b, **kw)

    # I view: item level, aggregated like the prior
    anchors_i, cold_i = warm_anchors(comp, prior.iI, warm_i, settings.anchor_n)

    def items_to_bundles(model):
        iI = prior.iI.copy()
        iI[cold_i] = sample(model, anchors_i[cold_i], comp[cold_i], **kw)
        return pool @ iI, iI

    den_i, log_i = train_diffusion(
        prior.iI[warm_i],
        comp[warm_i],
        settings,
        lambda m: tune_ndcg(prior.bB, items_to_bundles(m)[0]),
        progress,
        desc="diffusion I view",
    )
    dI, dI_items = items_to_bundles(den_i)
    return ViewDiffusion(
        (den_b, den_i),
        dB.astype(np.float32),
        dI.astype(np.float32),
        dI_items.astype(np.float32),
        cond_b,
        anchors_b.astype(np.float32),
        {"B": log_b, "I": log_i},
    )


def train_gates(
    data: BundleData, prior: Prior, ex: ViewExperts, settings: BundleSettings, eta: float, progress: bool = True
):
    """Stage 3: BPR over the scenario's training triples plus η pseudo-cold triples per real one."""
    rng = seed_everything(settings.seed)
    gate = HierarchicalGate(ex.aB.shape[1], ex.aI.shape[1], settings.output_gate)
    opt = torch.optim.Adam(gate.parameters(), lr=settings.gate_lr)
    T = {k: torch.from_numpy(getattr(ex, k)) for k in ("eB", "dB", "eI", "dI", "aB", "aI")}
    U = torch.from_numpy(prior.users())
    inter, warm = data.train, data.warm_bundles
    partners = PositivesByUser(inter)
    n_aug = int(round(min(eta, 1.0) * settings.gate_batch)) if eta > 0 else 0
    beta = torch.distributions.Beta(torch.tensor(settings.gate_aug_alpha), torch.tensor(settings.gate_aug_alpha))
    torch.manual_seed(settings.seed)

    def embed(a, b=None, lam=None):
        if b is None:
            return gate(T["aB"][a], T["aI"][a], T["eB"][a], T["dB"][a], T["eI"][a], T["dI"][a])[0]
        l = lam[:, None]
        mix = {k: l * T[k][a] + (1 - l) * T[k][b] for k in ("eB", "dB", "eI", "dI", "aI")}
        return gate(torch.zeros(len(a), T["aB"].shape[1]), mix["aI"], mix["eB"], mix["dB"], mix["eI"], mix["dI"])[0]

    def served() -> np.ndarray:
        with torch.no_grad():
            return embed(torch.arange(data.n_bundles)).numpy()

    Un = U.numpy()
    stopper = EarlyStopping(settings.patience)

    def step(epoch: int) -> dict:
        perm = rng.permutation(len(inter))
        total = 0.0
        for b in range(0, len(perm), settings.gate_batch):
            rows = perm[b : b + settings.gate_batch]
            users, pos, neg = partners.triples(rng, rows, warm)
            u = U[users]
            loss = bpr_loss((u * embed(pos)).sum(-1), (u * embed(neg)).sum(-1))
            if n_aug:
                r, p1, p2, n1, n2 = partners.pseudo_cold(rng, rows, warm, n_aug)
                ua = U[torch.from_numpy(inter.users[r])]
                lam = beta.sample((n_aug,))
                pseudo = (ua * embed(p1, p2, lam)).sum(-1)
                # against pseudo-cold negatives (cold vs cold) and real warm ones (cold vs warm, as at test time)
                loss = loss + eta * (
                    bpr_loss(pseudo, (ua * embed(n1, n2, lam)).sum(-1)) + bpr_loss(pseudo, (ua * embed(n1)).sum(-1))
                )
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(rows)
        return {"loss": total / len(perm)}

    def score() -> dict:
        emb = served()
        return {"tune_ndcg@20": evaluate(data, data.tune, lambda us: Un[us] @ emb.T)["ndcg@20"]}

    log = fit(
        settings.gate_epochs,
        step,
        score,
        stopper,
        lambda: {k: v.clone() for k, v in gate.state_dict().items()},
        desc=f"hierarchical gate ({data.scenario}, eta={eta})",
        progress=progress,
    )
    gate.load_state_dict(stopper.state)
    gate.eval()
    return gate, {"best_tune_ndcg@20": stopper.best, "epochs_run": len(log), "history": log}
