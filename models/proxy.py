"""The skeleton proxy model: an MLP from [text; image; presence mask] features to the ID space.

Trained with BPR against the frozen ID-model user embeddings plus an MSE pull towards the warm
items' ID embeddings (``bpr_weight=0`` gives the CB2CF-style regression baseline). Input
standardisation statistics are buffers, so they are baked into the exported ONNX graph. A missing
modality is zeroed *after* standardisation and flagged in the mask, so it carries no signal.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from models.data import ColdStartSplit
from models.evaluate import validation_cold_ndcg
from models.features import Features
from models.training import EarlyStopping, bpr_loss, seed_everything


class ProxyMLP(nn.Module):
    def __init__(self, text_dim: int, image_dim: int, out_dim: int, hidden: int = 256, dropout: float = 0.1):
        super().__init__()
        self.text_dim, self.image_dim, self.out_dim = text_dim, image_dim, out_dim
        for name, dim in (("text", text_dim), ("image", image_dim)):
            self.register_buffer(f"{name}_mean", torch.zeros(dim))
            self.register_buffer(f"{name}_std", torch.ones(dim))
        self.net = nn.Sequential(
            nn.Linear(text_dim + image_dim + 2, hidden), nn.GELU(), nn.Dropout(dropout),
            nn.Linear(hidden, hidden), nn.GELU(), nn.Dropout(dropout),
            nn.Linear(hidden, out_dim),
        )

    def fit_normalisation(self, f: Features) -> None:
        for name, x, present in (("text", f.text, f.has_text), ("image", f.image, f.has_image)):
            x = x[present] if present.any() else x
            getattr(self, f"{name}_mean").copy_(torch.from_numpy(x.mean(0)))
            getattr(self, f"{name}_std").copy_(torch.from_numpy(x.std(0) + 1e-4))

    def forward(self, text: torch.Tensor, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        t = (text - self.text_mean) / self.text_std * mask[:, 0:1]
        i = (image - self.image_mean) / self.image_std * mask[:, 1:2]
        return self.net(torch.cat([t, i, mask], dim=-1))


def tensors(f: Features, idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return torch.from_numpy(f.text[idx]), torch.from_numpy(f.image[idx]), torch.from_numpy(f.mask[idx])


@torch.no_grad()
def predict(model: nn.Module, f: Features, idx: np.ndarray, batch: int = 4096) -> np.ndarray:
    model.eval()
    out = [model(*tensors(f, idx[s : s + batch])).numpy() for s in range(0, len(idx), batch)]
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
    f: Features, split: ColdStartSplit, user_emb: np.ndarray, item_emb: np.ndarray, s,
    bpr_weight: float = 1.0, mse_weight: float | None = None, desc: str = "proxy", progress: bool = True,
) -> tuple[ProxyMLP, dict]:
    """BPR (over training interactions) + MSE to ID embeddings; early stopping on val-cold NDCG@20.

    With ``bpr_weight == 0`` the loop runs over warm items instead (pure content -> ID regression).
    """
    rng = seed_everything(s.seed)
    gen = torch.Generator().manual_seed(s.seed)
    mse_weight = s.proxy_mse_weight if mse_weight is None else mse_weight
    model = ProxyMLP(f.text.shape[1], f.image.shape[1], user_emb.shape[1], s.proxy_hidden, s.proxy_dropout)
    model.fit_normalisation(f.rows(split.warm_items))
    opt = torch.optim.AdamW(model.parameters(), lr=s.proxy_lr, weight_decay=s.proxy_weight_decay)
    U, I = torch.from_numpy(user_emb), torch.from_numpy(item_emb)
    warm = split.warm_items
    n = len(split.train) if bpr_weight > 0 else len(warm)
    probe = np.zeros_like(item_emb)
    stopper, log = EarlyStopping(s.patience), []
    bar = tqdm(range(s.proxy_epochs), desc=desc, disable=not progress)
    for epoch in bar:
        model.train()
        perm = rng.permutation(n)
        total = 0.0
        for b in range(0, n, s.proxy_batch):
            idx = perm[b : b + s.proxy_batch]
            pos = split.train.items[idx] if bpr_weight > 0 else warm[idx]
            neg = warm[rng.integers(0, len(warm), len(idx))]
            both = np.concatenate([pos, neg])
            t, im, m = tensors(f, both)
            p = model(t, im, _drop_modality(m, s.modality_dropout, gen))
            loss = mse_weight * F.mse_loss(p, I[torch.from_numpy(both)])
            if bpr_weight > 0:
                u = U[torch.from_numpy(split.train.users[idx])]
                loss = loss + bpr_weight * bpr_loss((u * p[: len(idx)]).sum(-1), (u * p[len(idx) :]).sum(-1))
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        probe[split.val_items] = predict(model, f, split.val_items)
        ndcg = validation_cold_ndcg(user_emb, probe, split)
        log.append({"epoch": epoch + 1, "loss": total / n, "val_cold_ndcg@20": ndcg})
        bar.set_postfix(loss=f"{total / n:.4f}", val_cold_ndcg20=f"{ndcg:.4f}")
        if stopper.step(ndcg, lambda: {k: v.clone() for k, v in model.state_dict().items()}):
            break
    model.load_state_dict(stopper.state)
    model.eval()
    return model, {"best_val_cold_ndcg@20": stopper.best, "epochs_run": len(log), "history": log}
