"""Cold-start baselines on the same split and metrics: random, content-kNN, CB2CF regression,
DropoutNet and a CLCRec-style contrastive mapping."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from coldproxy import anchors
from models.evaluate import validation_cold_ndcg
from models.features import Features
from models.items.generator import pal_loss
from models.items.proxy_training import ProxyMLP, predict, tensors, train_proxy, warm_norm
from models.split import ColdStartSplit
from models.training import EarlyStopping, fit, seed_everything


def content_vectors(features: Features) -> np.ndarray:
    """Cosine-ready content vector of every item (see ``coldproxy.anchors``)."""
    return anchors.content_vectors(features.text, features.image, features.mask)


def random_embeddings(item_emb: np.ndarray, items: np.ndarray, seed: int) -> np.ndarray:
    out = item_emb.copy()
    out[items] = np.random.default_rng(seed).normal(size=(len(items), item_emb.shape[1])).astype(np.float32)
    return out


def popularity_embeddings(n_users: int, n_items: int, train, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Popularity for all: every user scores an item by log(1 + its training interactions), as one-dimensional user
    and item vectors. Items without interactions (every cold one) tie, broken at random."""
    counts = np.bincount(train.items, minlength=n_items).astype(np.float32)
    items = np.log1p(counts) + 1e-6 * np.random.default_rng(seed).random(n_items, dtype=np.float32)
    return np.ones((n_users, 1), np.float32), items[:, None]


def knn_embeddings(
    features: Features,
    item_emb: np.ndarray,
    warm: np.ndarray,
    items: np.ndarray,
    neighbours: int = 5,
    temperature: float | None = None,
) -> np.ndarray:
    """Each item in ``items`` gets the mean ID embedding of its ``n`` nearest warm items by content
    (FAISS, IP on unit vectors): the similarity anchor on its own. With a ``temperature`` the mean is weighted by
    softmax(cosine / temperature) over the neighbours instead of uniform."""
    vec = content_vectors(features)
    out = item_emb.copy()
    index = anchors.AnchorIndex(vec[warm], item_emb[warm], neighbours)
    if temperature is None:
        out[items] = index.anchors(vec[items])
        return out
    rows = index.neighbours(vec[items])
    sims = np.einsum("nd,nkd->nk", vec[items], vec[warm][rows]) / temperature
    w = np.exp(sims - sims.max(axis=1, keepdims=True))
    out[items] = np.einsum("nk,nkd->nd", w / w.sum(axis=1, keepdims=True), index.emb[rows])
    return out


def cb2cf_embeddings(features: Features, split: ColdStartSplit, user_emb, item_emb, items, settings, progress=True):
    """CB2CF-style: an MLP regressing content onto ID embeddings with MSE only."""

    def build():
        return ProxyMLP(
            features.text.shape[1],
            features.image.shape[1],
            user_emb.shape[1],
            settings.proxy_hidden,
            settings.proxy_dropout,
        )

    model, log = train_proxy(
        build,
        features,
        split,
        user_emb,
        item_emb,
        settings,
        bpr_weight=0.0,
        mse_weight=1.0,
        desc="CB2CF",
        progress=progress,
    )
    out = item_emb.copy()
    out[items] = predict(model, features, items)
    return out, log


class CLCRecMLP(ProxyMLP):
    """CLCRec-style (Wei et al., 2021): content encoder whose output is contrasted with the item's
    collaborative embedding (in-batch InfoNCE, the representation-embedding term) and ranked against
    users (BPR, for the user-item term); served as the unit vector scaled to the warm items' mean norm, or, with
    ``scale`` None, as the encoder's own output (its norm learnt by the BPR term)."""

    def __init__(self, *args, scale: float | None = 1.0, **kw):
        super().__init__(*args, **kw)
        self.scale = scale

    def forward(self, *x):
        out = super().forward(*x)["proxy"]
        return {"proxy": out if self.scale is None else F.normalize(out, dim=-1) * self.scale}

    def aux_losses(self, out, targets, pal_temperature):
        return {"contrast": pal_loss(out["proxy"], targets, pal_temperature)}


def clcrec_embeddings(
    features: Features,
    split: ColdStartSplit,
    user_emb,
    item_emb,
    items,
    settings,
    progress=True,
    with_warm_norm: bool = True,
):
    scale = warm_norm(item_emb, split) if with_warm_norm else None

    def build():
        return CLCRecMLP(
            features.text.shape[1],
            features.image.shape[1],
            user_emb.shape[1],
            settings.proxy_hidden,
            settings.proxy_dropout,
            scale=scale,
        )

    model, log = train_proxy(
        build,
        features,
        split,
        user_emb,
        item_emb,
        settings,
        weights={"contrast": 1.0},
        desc="CLCRec",
        progress=progress,
    )
    out = item_emb.copy()
    out[items] = predict(model, features, items)
    return out, log


class DropoutNetItem(nn.Module):
    """DropoutNet (Volkovs et al., 2017), item side: an MLP over [ID-embedding input; content] that
    reconstructs the ID model's scores; the ID input is dropped at random in training and is zero
    for a cold item, so the network learns to score from content alone."""

    def __init__(self, content: ProxyMLP, dim: int, hidden: int):
        super().__init__()
        self.content = content
        self.mix = nn.Sequential(nn.Linear(2 * dim, hidden), nn.Tanh(), nn.Linear(hidden, dim))

    def forward(self, pref: torch.Tensor, *x) -> torch.Tensor:
        return self.mix(torch.cat([pref, self.content(*x)["proxy"]], dim=-1))


def dropoutnet_embeddings(
    features: Features,
    split: ColdStartSplit,
    user_emb,
    item_emb,
    items,
    settings,
    progress=True,
    drop_rate: float = 0.5,
    with_warm_norm: bool = False,
):
    """DropoutNet's item side, fitted on the warm training clicks; with ``with_warm_norm`` a cold item's vector is
    served at unit length times the warm items' mean norm (``warm_norm``), as CLCRec's is."""
    rng = seed_everything(settings.seed)
    scale = warm_norm(item_emb, split) if with_warm_norm else None
    d = user_emb.shape[1]
    content = ProxyMLP(
        features.text.shape[1], features.image.shape[1], d, settings.proxy_hidden, settings.proxy_dropout
    )
    content.fit_normalisation(features.rows(split.warm_items))
    model = DropoutNetItem(content, d, settings.proxy_hidden)
    opt = torch.optim.AdamW(model.parameters(), lr=settings.proxy_lr, weight_decay=settings.proxy_weight_decay)
    U, I = torch.from_numpy(user_emb), torch.from_numpy(item_emb)
    warm, n = split.warm_items, len(split.train)

    @torch.no_grad()
    def cold(idx: np.ndarray) -> np.ndarray:
        model.eval()
        v = model(torch.zeros(len(idx), d), *tensors(features, idx))
        return (v if scale is None else F.normalize(v, dim=-1) * scale).numpy()

    probe, stopper = np.zeros_like(item_emb), EarlyStopping(settings.patience)

    def step(epoch: int) -> dict:
        model.train()
        perm, total = rng.permutation(n), 0.0
        for b in range(0, n, settings.proxy_batch):
            idx = perm[b : b + settings.proxy_batch]
            it = np.concatenate([split.train.items[idx], warm[rng.integers(0, len(warm), len(idx))]])
            us = torch.from_numpy(np.concatenate([split.train.users[idx]] * 2))
            pref = I[torch.from_numpy(it)] * (torch.rand(len(it), 1) >= drop_rate)
            v = model(pref, *tensors(features, it))
            loss = F.mse_loss((U[us] * v).sum(-1), (U[us] * I[torch.from_numpy(it)]).sum(-1))
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        return {"loss": total / n}

    def score() -> dict:
        probe[split.val_items] = cold(split.val_items)
        return {"val_cold_ndcg@20": validation_cold_ndcg(user_emb, probe, split)}

    fit(
        settings.proxy_epochs,
        step,
        score,
        stopper,
        lambda: {k: v.clone() for k, v in model.state_dict().items()},
        desc="DropoutNet",
        progress=progress,
    )
    model.load_state_dict(stopper.state)
    out = item_emb.copy()
    out[items] = cold(items)
    return out, {"best_val_cold_ndcg@20": stopper.best, "epochs_run": stopper.epochs_run}
