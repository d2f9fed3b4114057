"""Training loop shared by every content -> ID-space model, and the skeleton MLP.

``train_proxy`` fits a model whose forward takes (text, image, text_layers, image_stages, mask)
and returns a dict with ``proxy``: a ranking loss against the frozen ID-model user embeddings
(``ranking_loss``: BPR over ``proxy_negatives`` warm negatives a click, or a sampled softmax over
the batch's negatives), an optional
MSE pull towards the warm items' ID embeddings, and the model's own auxiliary losses (the
generator's balance, alignment and PAL terms) weighted by ``weights``; early stopping on
validation-cold NDCG@20. ``ProxyMLP`` (the skeleton's model) is kept for the CB2CF-style
regression baseline (``bpr_weight=0``). A missing modality is zeroed *after* standardisation and
flagged in the mask, so it carries no signal.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from models.evaluate import validation_cold_ndcg
from models.features import Features
from models.split import ColdStartSplit
from models.training import EarlyStopping, bpr_loss, epoch_rows, fit, seed_everything


class ProxyMLP(nn.Module):
    def __init__(self, text_dim: int, image_dim: int, out_dim: int, hidden: int = 256, dropout: float = 0.1):
        super().__init__()
        self.text_dim, self.image_dim, self.out_dim = text_dim, image_dim, out_dim
        for name, dim in (("text", text_dim), ("image", image_dim)):
            self.register_buffer(f"{name}_mean", torch.zeros(dim))
            self.register_buffer(f"{name}_std", torch.ones(dim))
        self.net = nn.Sequential(
            nn.Linear(text_dim + image_dim + 2, hidden),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, hidden),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, out_dim),
        )

    def fit_normalisation(self, features: Features) -> None:
        for name, x, present in (
            ("text", features.text, features.has_text),
            ("image", features.image, features.has_image),
        ):
            x = x[present] if present.any() else x
            getattr(self, f"{name}_mean").copy_(torch.from_numpy(x.mean(0)))
            getattr(self, f"{name}_std").copy_(torch.from_numpy(x.std(0) + 1e-4))

    def forward(self, text, image, text_layers, image_stages, mask) -> dict[str, torch.Tensor]:
        t = (text - self.text_mean) / self.text_std * mask[:, 0:1]
        i = (image - self.image_mean) / self.image_std * mask[:, 1:2]
        return {"proxy": self.net(torch.cat([t, i, mask], dim=-1))}

    def aux_losses(self, out, targets, pal_temperature) -> dict[str, torch.Tensor]:
        return {}


def warm_norm(item_emb: np.ndarray, split: ColdStartSplit) -> float:
    """The warm items' mean ID-embedding norm: the generator's initial output scale, and the length a baseline with
    the warm norm serves its unit vectors at."""
    return float(np.linalg.norm(item_emb[split.warm_items], axis=1).mean())


def tensors(
    features: Features, idx: np.ndarray, mask: np.ndarray | None = None, prepared: dict[str, torch.Tensor] | None = None
) -> tuple[torch.Tensor, ...]:
    """Model inputs for rows ``idx``: text, image, text_layers, image_stages, modality mask; with ``prepared`` (a
    generator's ``training_inputs`` of every item) its rows instead, gathered by torch."""
    if prepared is not None:
        rows = torch.from_numpy(np.asarray(idx, dtype=np.int64))
        return tuple(
            prepared[k].index_select(0, rows) for k in ("text", "image", "text_layers", "image_stages", "mask")
        )
    m = features.mask[idx] if mask is None else mask
    return (
        torch.from_numpy(features.text[idx]),
        torch.from_numpy(features.image[idx]),
        torch.from_numpy(features.text_layers[idx]),
        torch.from_numpy(features.image_stages[idx]),
        torch.from_numpy(np.ascontiguousarray(m, dtype=np.float32)),
    )


@torch.no_grad()
def predict(model: nn.Module, features: Features, idx: np.ndarray, batch: int = 4096, key: str = "proxy") -> np.ndarray:
    """``key`` of the model's output for rows ``idx`` (``alpha`` for a generator's fusion weights)."""
    model.eval()
    out = [model(*tensors(features, idx[s : s + batch]))[key].numpy() for s in range(0, len(idx), batch)]
    return np.concatenate(out) if out else np.zeros((0, model.out_dim), dtype=np.float32)


def _drop_modality(mask: torch.Tensor, p: float, gen: torch.Generator) -> torch.Tensor:
    """Hide one present modality of a random share of items, never both."""
    if p <= 0:
        return mask
    drop = torch.rand(len(mask), generator=gen) < p
    which = (torch.rand(len(mask), generator=gen) < 0.5).long()
    both = mask.sum(1) == 2
    out = mask.clone()
    rows = torch.nonzero(drop & both).squeeze(1)
    out[rows, which[rows]] = 0.0
    return out


def train_proxy(
    build: Callable[[], nn.Module],
    features: Features,
    split: ColdStartSplit,
    user_emb: np.ndarray,
    item_emb: np.ndarray,
    settings,
    bpr_weight: float = 1.0,
    mse_weight: float = 0.0,
    weights: dict[str, float] | None = None,
    desc: str = "proxy",
    progress: bool = True,
    epochs: int | None = None,
) -> tuple[nn.Module, dict]:
    """Seed, ``build()`` the model (so its initialisation depends on ``s.seed`` only), fit it
    (normalisation from warm items); early stopping on val-cold NDCG@20, or exactly ``epochs`` epochs without
    validation (a refit on all the data). With ``proxy_ema_decay`` > 0
    an exponential moving average of the weights (``torch.optim.swa_utils``) is what is validated,
    snapshot and returned: the average over the last ~1/(1 - decay) steps, steadier than one step's.

    With ``bpr_weight == 0`` the loop runs over warm items instead (pure content -> ID regression).
    """
    rng = seed_everything(settings.seed)
    gen = torch.Generator().manual_seed(settings.seed)
    model = build()
    weights = weights or {}
    model.fit_normalisation(features.rows(split.warm_items))
    # a generator's standardised inputs and text-layer groups, computed once (its statistics are fixed now)
    prepared = model.training_inputs(features) if hasattr(model, "training_inputs") else None
    ready = {"prepared": True} if prepared is not None else {}
    opt = torch.optim.AdamW(
        model.parameters(), lr=settings.proxy_lr, weight_decay=settings.proxy_weight_decay, foreach=True
    )  # one kernel a step for all weights: the same values, 6 ms less a step
    ema = (
        AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(settings.proxy_ema_decay), use_buffers=True)
        if settings.proxy_ema_decay > 0
        else None
    )
    scored = ema.module if ema is not None else model  # what validation sees and training returns
    U, I = torch.from_numpy(user_emb), torch.from_numpy(item_emb)
    warm = split.warm_items
    n = len(split.train) if bpr_weight > 0 else len(warm)
    n_neg = settings.proxy_negatives if bpr_weight > 0 else 1
    probe = np.zeros_like(item_emb)
    stopper = EarlyStopping(settings.proxy_patience, epochs)

    def step(epoch: int) -> dict:
        model.train()
        perm = epoch_rows(rng, n, settings.proxy_batch, settings.proxy_steps_per_epoch)
        total = 0.0
        parts = dict.fromkeys(weights, 0.0)
        for b in range(0, len(perm), settings.proxy_batch):
            idx = perm[b : b + settings.proxy_batch]
            pos = split.train.items[idx] if bpr_weight > 0 else warm[idx]
            neg = warm[rng.integers(0, len(warm), len(idx) * n_neg)]  # row r's negatives: r, r + len(idx), ...
            both = np.concatenate([pos, neg])
            x = tensors(features, both, prepared=prepared)
            out = model(*x[:-1], _drop_modality(x[-1], settings.modality_dropout, gen), **ready)
            p = out["proxy"]
            loss = torch.zeros(())
            if mse_weight > 0:
                loss = loss + mse_weight * F.mse_loss(p, I[torch.from_numpy(both)])
            if bpr_weight > 0:
                u = U[torch.from_numpy(split.train.users[idx])]
                loss = loss + bpr_weight * ranking_loss(u, p[: len(idx)], p[len(idx) :], settings.proxy_ranking_loss)
            if weights:
                _, first = np.unique(both, return_index=True)  # PAL: each item once, others are in-batch negatives
                sel = torch.from_numpy(np.sort(first))
                aux = model.aux_losses(
                    {k: _rows(v, sel) for k, v in out.items()}, I[torch.from_numpy(both)][sel], settings.pal_temperature
                )
                for k, w in weights.items():
                    if w > 0 and k in aux:
                        loss = loss + w * aux[k]
                        parts[k] += float(aux[k].detach()) * len(idx)
            opt.zero_grad()
            loss.backward()
            opt.step()
            if ema is not None:
                ema.update_parameters(model)
            total += loss.item() * len(idx)
        seen = len(perm)
        return {"loss": total / seen} | {k: v / seen for k, v in parts.items()}

    def score() -> dict:
        probe[split.val_items] = predict(scored, features, split.val_items)
        return {"val_cold_ndcg@20": validation_cold_ndcg(user_emb, probe, split)}

    def snapshot():
        return {k: v.clone() for k, v in scored.state_dict().items()}

    log = fit(settings.proxy_epochs, step, score, stopper, snapshot, desc=desc, progress=progress)
    model.load_state_dict(stopper.state)
    model.eval()
    out = {"epochs_run": len(log), "best_epoch": stopper.best_epoch, "history": log}
    return model, out | ({"best_val_cold_ndcg@20": stopper.best} if stopper.validating else {})


def ranking_loss(users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor, kind: str) -> torch.Tensor:
    """The generator's ranking loss for B clicks (``users``, ``pos``: B x d) against ``neg`` (n*B x d,
    row r's own negatives at r, r + B, ...): BPR averaged over each click's n pairs; or a sampled
    softmax, each click against every negative of the batch (n*B of them, shared: no extra forward
    pass), cross-entropy with the click as the class."""
    s_pos = (users * pos).sum(-1)
    if kind == "softmax":
        logits = torch.cat([s_pos.unsqueeze(1), users @ neg.T], 1)
        return F.cross_entropy(logits, torch.zeros(len(logits), dtype=torch.long))
    s_neg = (users.unsqueeze(0) * neg.view(-1, *users.shape)).sum(-1).T  # B x n
    return bpr_loss(s_pos.unsqueeze(1), s_neg)


def _rows(value, sel: torch.Tensor):
    return tuple(_rows(t, sel) for t in value) if isinstance(value, tuple) else value[sel]
