"""Stage 1 of the bundle model: the dual-level two-view prior (CrossCBR backbone, MoDiffE §3.2),
and the all-unrated-bundle evaluation every stage uses.

The bundle-level view propagates users and bundles over the user-bundle graph; the item-level view
propagates users and items over the user-item graph, a bundle being the mean of its items (eq. 5;
``item_pooling`` below 1: their sum over members^p).
y_ub = r_u^B·r_b^B + r_u^I·r_b^I, trained with BPR plus CrossCBR's cross-view contrastive loss and
early-stopped on the scenario's tune split (the cold scenario's prior trains a fixed number of
epochs: its tune split holds only bundles the prior never saw). The defaults are CrossCBR's
published settings (``BundleSettings``): one user table shared by both views, layer 0 plus each
propagated layer L2-normalised, Xavier init, Adam weight decay, and edge dropout on the three graphs,
resampled every epoch (the full graphs are used to evaluate and to serve); LightGCN's mean of layers,
N(0, 0.1) init, a user table per view and MoDiffE's item-level BPR are options."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from coldproxy.config import BundleSettings
from models.bundles.data import BundleData
from models.data import Interactions
from models.evaluate import hit_rates, ranking_metrics, top_columns
from models.idmodel import normalised_adjacency
from models.training import EarlyStopping, bpr_loss, seed_everything


def mean_matrix(groups: Interactions, n_groups: int, n_members: int, power: float = 1.0) -> torch.Tensor:
    """Sparse [n_groups, n_members] with 1/|group|^power at each (group, member): the mean for power 1."""
    size = np.bincount(groups.users, minlength=n_groups).astype(np.float32)
    vals = 1.0 / np.maximum(size[groups.users], 1.0) ** power
    idx = torch.from_numpy(np.stack([groups.users, groups.items]))
    return torch.sparse_coo_tensor(idx, torch.from_numpy(vals), (n_groups, n_members)).coalesce()


def _kept(pairs: Interactions, rng: np.random.Generator | None, dropout: float) -> Interactions:
    if rng is None or dropout <= 0:
        return pairs
    keep = rng.random(len(pairs.users)) >= dropout
    return Interactions(pairs.users[keep], pairs.items[keep])


class DualView(nn.Module):
    """The two views' base tables and graphs: (user-bundle adjacency, user-item adjacency, bundle-item mean)."""

    def __init__(self, data: BundleData, settings: BundleSettings):
        super().__init__()
        self.data, self.layers, self.combine = data, settings.lightgcn_layers, settings.layer_combine
        self.pooling = settings.item_pooling
        # created and initialised view by view, users first (the order of the RNG draws is part of a seed's result)
        tables = partial(self._tables, dim=settings.dim, init=settings.init)
        self.user_b, self.bundle = tables(data.n_users, data.n_bundles)
        if settings.shared_user_table:
            self.user_i, self.item = self.user_b, tables(data.n_items)[0]
        else:
            self.user_i, self.item = tables(data.n_users, data.n_items)
        self.full = self.graphs(None, 0.0)
        self.training_graphs = self.full

    @staticmethod
    def _tables(*sizes: int, dim: int, init: str) -> list[nn.Embedding]:
        tables = [nn.Embedding(n, dim) for n in sizes]
        for t in tables:
            if init == "xavier":
                nn.init.xavier_normal_(t.weight)
            else:
                nn.init.normal_(t.weight, std=0.1)
        return tables

    def graphs(
        self, rng: np.random.Generator | None, dropout: float
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        d = self.data
        ub, ui, bi = (_kept(x, rng, dropout) for x in (d.train, d.user_item, d.bundle_item))
        return (
            normalised_adjacency(d.n_users, d.n_bundles, ub.users, ub.items),
            normalised_adjacency(d.n_users, d.n_items, ui.users, ui.items),
            mean_matrix(bi, d.n_bundles, d.n_items, self.pooling),
        )

    def resample(self, rng: np.random.Generator, dropout: float) -> None:
        """New training graphs with each edge dropped with probability ``dropout`` (CrossCBR's ED)."""
        self.training_graphs = self.graphs(rng, dropout)

    def _propagate(self, adj: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        e = torch.cat([a, b])
        out = [e]
        for _ in range(self.layers):
            e = torch.sparse.mm(adj, e)
            out.append(F.normalize(e, dim=1) if self.combine == "normalised_sum" else e)
        e = torch.stack(out).sum(0) if self.combine == "normalised_sum" else torch.stack(out).mean(0)
        return e[: len(a)], e[len(a) :]

    def embeddings(self, training: bool = False):
        """(r_u^B, r_b^B, r_u^I, r_b^I, r_i^I); ``training``: over the edge-dropped graphs."""
        adj_b, adj_i, agg = self.training_graphs if training else self.full
        uB, bB = self._propagate(adj_b, self.user_b.weight, self.bundle.weight)
        uI, iI = self._propagate(adj_i, self.user_i.weight, self.item.weight)
        return uB, bB, uI, torch.sparse.mm(agg, iI), iI


def _info_nce(a: torch.Tensor, b: torch.Tensor, temp: float) -> torch.Tensor:
    a, b = F.normalize(a, dim=-1), F.normalize(b, dim=-1)
    return F.cross_entropy(a @ b.T / temp, torch.arange(len(a)))


@dataclass
class Prior:
    uB: np.ndarray
    bB: np.ndarray
    uI: np.ndarray
    bI: np.ndarray
    iI: np.ndarray

    def users(self) -> np.ndarray:
        """[n_users, 2·dim]: each user's two views [r_u^B ; r_u^I]."""
        return np.concatenate([self.uB, self.uI], 1)


def view_scores(users: np.ndarray, uB, bB, uI, bI, out_w: np.ndarray | None = None) -> np.ndarray:
    """y_ub for ``users`` x all bundles (eq. 19); ``out_w`` [n_bundles, 2] the output gate's view weights."""
    if out_w is None:
        return uB[users] @ bB.T + uI[users] @ bI.T
    return (uB[users] @ bB.T) * out_w[:, 0] + (uI[users] @ bI.T) * out_w[:, 1]


def evaluate(data: BundleData, part: Interactions, scorer, ks=(20,), new: np.ndarray | None = None) -> dict[str, float]:
    """All-unrated-bundle protocol: every bundle is a candidate except the user's training bundles. With
    ``new`` (a mask over bundles), also ``hit_rates`` at the largest K for those bundles."""
    users = np.unique(part.users)
    scores = scorer(users)
    row = -np.ones(data.n_users, np.int64)
    row[users] = np.arange(len(users))
    seen = row[data.train.users] >= 0
    scores[row[data.train.users[seen]], data.train.items[seen]] = -np.inf
    relevant: list[list[int]] = [[] for _ in users]
    for u, b in zip(row[part.users], part.items):
        relevant[u].append(b)
    relevant = [np.array(r, np.int64) for r in relevant]
    if new is None:
        return ranking_metrics(scores, relevant, ks)
    top = top_columns(scores, max(ks))
    return ranking_metrics(scores, relevant, ks, top) | hit_rates(top, relevant, [new[r] for r in relevant], max(ks))


def train_prior(data: BundleData, settings: BundleSettings, progress: bool = True) -> tuple[Prior, dict]:
    rng = seed_everything(settings.seed)
    model = DualView(data, settings)
    opt = torch.optim.Adam(model.parameters(), lr=settings.id_lr, weight_decay=settings.id_weight_decay)
    users, bundles = torch.from_numpy(data.train.users), torch.from_numpy(data.train.items)
    ui_u, ui_i = torch.from_numpy(data.user_item.users), torch.from_numpy(data.user_item.items)
    warm = data.warm_bundles
    fixed = settings.prior_fixed_epochs.get(data.scenario)  # None: early-stopped on tune
    n_epochs = min(fixed, settings.id_epochs) if fixed else settings.id_epochs
    stopper, log = EarlyStopping(settings.patience), []
    bar = tqdm(range(n_epochs), desc=f"bundle prior ({data.scenario}, BPR + cross-view)", disable=not progress)
    for epoch in bar:
        if settings.edge_dropout > 0:
            model.resample(rng, settings.edge_dropout)
        perm = torch.from_numpy(rng.permutation(len(users)))
        total = 0.0
        for b in range(0, len(perm), settings.id_batch):
            idx = perm[b : b + settings.id_batch]
            neg = torch.from_numpy(warm[rng.integers(0, len(warm), (len(idx), settings.bpr_negatives))])
            uB, bB, uI, bI, iI = model.embeddings(training=True)
            u, p = users[idx], bundles[idx]
            pos = (uB[u] * bB[p]).sum(-1) + (uI[u] * bI[p]).sum(-1)
            ng = (uB[u][:, None] * bB[neg]).sum(-1) + (uI[u][:, None] * bI[neg]).sum(-1)
            loss = bpr_loss(pos[:, None], ng)
            if settings.item_bpr_weight > 0:
                k = torch.from_numpy(rng.integers(0, len(ui_u), len(idx)))
                uu, ii, jj = uI[ui_u[k]], iI[ui_i[k]], iI[torch.from_numpy(rng.integers(0, data.n_items, len(idx)))]
                loss = loss + settings.item_bpr_weight * bpr_loss((uu * ii).sum(-1), (uu * jj).sum(-1))
            if settings.contrast_weight > 0:
                uu, pp = torch.unique(u), torch.unique(p)
                loss = loss + settings.contrast_weight * (
                    _info_nce(uB[uu], uI[uu], settings.contrast_temp)
                    + _info_nce(bB[pp], bI[pp], settings.contrast_temp)
                )
            base = model.user_b(u).pow(2).sum() + model.bundle(p).pow(2).sum()
            if model.user_i is not model.user_b:
                base = base + model.user_i(u).pow(2).sum()
            loss = loss + settings.id_reg * base / len(idx)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        if (epoch + 1) % settings.eval_every == 0 or epoch + 1 == n_epochs:
            with torch.no_grad():
                emb = [t.numpy().copy() for t in model.embeddings()]
            ndcg = evaluate(data, data.tune, lambda us: view_scores(us, *emb[:4]))["ndcg@20"]
            log.append({"epoch": epoch + 1, "loss": total / len(perm), "tune_ndcg@20": ndcg})
            bar.set_postfix(loss=f"{total / len(perm):.4f}", tune_ndcg20=f"{ndcg:.4f}")
            if fixed:
                stopper.best, stopper.state = ndcg, emb  # the last epoch's, whatever tune says
            elif stopper.step(ndcg, lambda: emb):
                break
    return Prior(*stopper.state), {
        "best_tune_ndcg@20": stopper.best,
        "history": log,
        "epochs_run": log[-1]["epoch"],
        "fixed_epochs": n_epochs if fixed else None,
    }
