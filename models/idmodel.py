"""The "existing recommender": matrix factorisation trained with BPR on warm interactions.

Its user embeddings and warm-item embeddings define the space that proxies must live in.
Early stopping on warm-validation NDCG@20.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from models.data import ColdStartSplit
from models.evaluate import evaluate_candidates
from models.training import EarlyStopping, bpr_loss, seed_everything


class MF(nn.Module):
    def __init__(self, n_users: int, n_items: int, dim: int):
        super().__init__()
        self.user = nn.Embedding(n_users, dim)
        self.item = nn.Embedding(n_items, dim)
        nn.init.normal_(self.user.weight, std=0.1)
        nn.init.normal_(self.item.weight, std=0.1)


def train_mf(n_users: int, n_items: int, split: ColdStartSplit, s, progress: bool = True) -> tuple[np.ndarray, np.ndarray, dict]:
    """Returns (user_emb [n_users, d], item_emb [n_items, d] with zero rows for cold items, log)."""
    rng = seed_everything(s.seed)
    model = MF(n_users, n_items, s.dim)
    opt = torch.optim.Adam(model.parameters(), lr=s.id_lr)
    users = torch.from_numpy(split.train.users)
    items = torch.from_numpy(split.train.items)
    warm = split.warm_items
    stopper, log = EarlyStopping(s.patience), []
    bar = tqdm(range(s.id_epochs), desc="ID model (MF-BPR)", disable=not progress)
    for epoch in bar:
        perm = torch.from_numpy(rng.permutation(len(users)))
        neg_all = torch.from_numpy(warm[rng.integers(0, len(warm), len(users))])
        total = 0.0
        for b in range(0, len(perm), s.id_batch):
            idx = perm[b : b + s.id_batch]
            u, i, j = model.user(users[idx]), model.item(items[idx]), model.item(neg_all[b : b + s.id_batch])
            loss = bpr_loss((u * i).sum(-1), (u * j).sum(-1))
            loss = loss + s.id_reg * (u.pow(2).sum() + i.pow(2).sum() + j.pow(2).sum()) / len(idx)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        if (epoch + 1) % s.eval_every == 0 or epoch + 1 == s.id_epochs:
            U, I = model.user.weight.detach().numpy(), model.item.weight.detach().numpy()
            ndcg = evaluate_candidates(U, I, warm, split.warm_val, split.train, (20,))["ndcg@20"]
            log.append({"epoch": epoch + 1, "loss": total / len(perm), "warm_val_ndcg@20": ndcg})
            bar.set_postfix(loss=f"{total / len(perm):.4f}", val_ndcg20=f"{ndcg:.4f}")
            if stopper.step(ndcg, lambda: (U.copy(), I.copy())):
                break
    U, I = stopper.state
    I[np.setdiff1d(np.arange(n_items), warm)] = 0.0
    return U.astype(np.float32), I.astype(np.float32), {"best_warm_val_ndcg@20": stopper.best, "history": log}
