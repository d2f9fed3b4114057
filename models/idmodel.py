"""The "existing recommender": MF or LightGCN, trained with BPR on warm interactions.

Its user embeddings and warm-item embeddings define the space that proxies must live in.
LightGCN (He et al., 2020) propagates the base embeddings over the symmetric-normalised
user-item graph and averages the layers. Early stopping on warm-validation NDCG@20.
"""

from __future__ import annotations

import logging
import time
import warnings

import numpy as np
import torch
from torch import nn

from models.evaluate import evaluate_candidates
from models.split import ColdStartSplit
from models.training import EarlyStopping, bpr_loss, fit, seed_everything

log = logging.getLogger("coldproxy.train")


class MF(nn.Module):
    def __init__(self, n_users: int, n_items: int, dim: int):
        super().__init__()
        self.user = nn.Embedding(n_users, dim)
        self.item = nn.Embedding(n_items, dim)
        nn.init.normal_(self.user.weight, std=0.1)
        nn.init.normal_(self.item.weight, std=0.1)

    def embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.user.weight, self.item.weight


class LightGCN(MF):
    """``csr``: propagate with the graph in CSR form and a backward that reuses it (``propagate``), about 4x faster a
    step than autograd through a COO product on a 1M-edge graph (issue 40); off, the COO product as before (the
    bundle model's composition features keep it until their benchmark is rerun)."""

    def __init__(
        self, n_users: int, n_items: int, dim: int, users: np.ndarray, items: np.ndarray, layers: int, csr: bool = True
    ):
        super().__init__(n_users, n_items, dim)
        self.n_users, self.layers = n_users, layers
        self.adj = normalised_adjacency(n_users, n_items, users, items)
        self.csr = None
        if csr:
            with warnings.catch_warnings():  # "sparse CSR support is in beta": the product and its layout are stable
                warnings.simplefilter("ignore", UserWarning)
                self.csr = self.adj.to_sparse_csr()

    def embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        e = torch.cat([self.user.weight, self.item.weight])
        out = [e]
        for _ in range(self.layers):
            e = torch.sparse.mm(self.adj, e) if self.csr is None else propagate(self.csr, e)
            out.append(e)
        e = torch.stack(out).mean(0)
        return e[: self.n_users], e[self.n_users :]


class _Symmetric(torch.autograd.Function):
    @staticmethod
    def forward(ctx, adj: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        ctx.adj = adj
        return adj @ e

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return None, ctx.adj @ grad


def propagate(adj: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
    """``adj @ e`` for a symmetric sparse ``adj`` (CSR): its gradient is ``adj @ grad`` since adj^T = adj, so the
    backward reuses the same CSR matrix instead of autograd transposing it at every step."""
    return _Symmetric.apply(adj, e)


def normalised_adjacency(n_users: int, n_items: int, users: np.ndarray, items: np.ndarray) -> torch.Tensor:
    """D^-1/2 A D^-1/2 of the bipartite user-item graph (users first, then items), sparse."""
    pairs = np.unique(np.stack([users, items], 1), axis=0)
    rows = np.concatenate([pairs[:, 0], n_users + pairs[:, 1]])
    cols = np.concatenate([n_users + pairs[:, 1], pairs[:, 0]])
    n = n_users + n_items
    deg = np.bincount(rows, minlength=n).astype(np.float32)
    inv = np.zeros(n, np.float32)
    np.power(deg, -0.5, out=inv, where=deg > 0)
    vals = inv[rows] * inv[cols]
    return torch.sparse_coo_tensor(torch.from_numpy(np.stack([rows, cols])), torch.from_numpy(vals), (n, n)).coalesce()


def train_id_model(
    n_users: int, n_items: int, split: ColdStartSplit, settings, progress: bool = True, epochs: int | None = None
) -> tuple[np.ndarray, np.ndarray, dict]:
    """``s.id_model`` ("mf" | "lightgcn"). Returns (user_emb [n_users, d], item_emb [n_items, d] with
    zero rows for cold items, log). With ``epochs`` (a refit): exactly that many, nothing validated."""
    rng = seed_everything(settings.seed)
    if settings.id_model == "lightgcn":
        model = LightGCN(n_users, n_items, settings.dim, split.train.users, split.train.items, settings.lightgcn_layers)
    else:
        model = MF(n_users, n_items, settings.dim)
    users = torch.from_numpy(split.train.users)
    items = torch.from_numpy(split.train.items)
    batch, lr = id_batch_and_lr(len(users), settings)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    warm = split.warm_items
    stopper = EarlyStopping(settings.patience, epochs)
    train_s = 0.0  # seconds spent in the BPR steps, evaluation left out
    scored: dict = {}  # the tables the last validation scored: a new best keeps them

    def step(epoch: int) -> dict:
        nonlocal train_s
        t0 = time.perf_counter()
        perm = torch.from_numpy(rng.permutation(len(users)))
        neg_all = torch.from_numpy(warm[rng.integers(0, len(warm), len(users))])
        total = 0.0
        for b in range(0, len(perm), batch):
            idx = perm[b : b + batch]
            neg = neg_all[b : b + batch]
            U_all, I_all = model.embeddings()
            u, i, j = U_all[users[idx]], I_all[items[idx]], I_all[neg]
            loss = bpr_loss((u * i).sum(-1), (u * j).sum(-1))
            u0, i0, j0 = model.user(users[idx]), model.item(items[idx]), model.item(neg)  # L2 on the base embeddings
            loss = loss + settings.id_reg * (u0.pow(2).sum() + i0.pow(2).sum() + j0.pow(2).sum()) / len(idx)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        train_s += time.perf_counter() - t0
        return {"loss": total / len(perm), "train_s": round(train_s, 3)}

    def score() -> dict:
        scored["tables"] = U, I = tables(model)
        return {"warm_val_ndcg@20": evaluate_candidates(U, I, warm, split.warm_val, split.train, (20,))["ndcg@20"]}

    def snapshot():
        if not stopper.validating:
            return tables(model)
        U, I = scored["tables"]
        return U.copy(), I.copy()

    log = fit(
        settings.id_epochs,
        step,
        score,
        stopper,
        snapshot,
        desc=f"ID model ({settings.id_model}, BPR)",
        progress=progress,
        eval_every=settings.eval_every,
        log_unscored=False,
    )
    U, I = stopper.state
    I[np.setdiff1d(np.arange(n_items), warm)] = 0.0
    out = {
        "history": log,
        "batch": batch,
        "lr": lr,
        "epochs_run": stopper.epochs_run,
        "best_epoch": stopper.best_epoch,
        "train_s": round(train_s, 3),
    }
    if stopper.validating:
        out |= {
            "best_warm_val_ndcg@20": stopper.best,
            "diagnostics": id_model_diagnostics(stopper.best, n_users, n_items, split, settings.seed),
        }
    return U.astype(np.float32), I.astype(np.float32), out


def tables(model: MF) -> tuple[np.ndarray, np.ndarray]:
    """The model's (user, item) embedding tables as numpy copies."""
    with torch.no_grad():
        U, I = model.embeddings()
    return U.detach().numpy().copy(), I.detach().numpy().copy()


def id_batch_and_lr(positives: int, settings) -> tuple[int, float]:
    """The ID model's BPR batch and learning rate for ``positives`` training triples: ``id_batch`` unless
    ``id_steps_per_epoch`` caps the steps of an epoch, so an epoch costs that many graph propagations however large
    the data (each step propagates over the whole graph: an unbounded epoch's cost grows with the square of the
    data); the learning rate scaled by (batch / id_batch)^``id_lr_batch_power``."""
    batch = settings.id_batch
    if settings.id_steps_per_epoch:
        batch = max(batch, -(-positives // settings.id_steps_per_epoch))
    return batch, settings.id_lr * (batch / settings.id_batch) ** settings.id_lr_batch_power


CLEARLY_BETTER = 1.1  # the ID model must beat the best trivial ranker by 10% on warm validation


ID_MODEL_ADVICE = "try id_model=lightgcn, more data per user, or stronger regularisation"


def id_model_diagnostics(
    ndcg: float,
    n_users: int,
    n_items: int,
    split: ColdStartSplit,
    seed: int,
    subject: str = "the ID model's",
    advice: str = ID_MODEL_ADVICE,
) -> dict:
    """Did the ID model learn anything that generalises? Its warm-validation NDCG@20 against the same
    ranking by popularity (training counts) and at random. Every proxy is trained to imitate the ID
    space, so when it is noise the whole package is: say so loudly (log, metrics.json, /v1/model).
    ``subject`` and ``advice`` word the warning (a given space's vectors are not an ID model's)."""
    warm, seen = split.warm_items, split.train
    ones = np.ones((n_users, 1), np.float32)
    popularity = np.bincount(seen.items, minlength=n_items).astype(np.float32)[:, None]
    noise = np.random.default_rng(seed).random((n_items, 1)).astype(np.float32)
    # one score per item for every user: break the ties of a constant user vector with a tiny jitter
    pop = evaluate_candidates(ones, popularity + 1e-3 * noise, warm, split.warm_val, seen, (20,))["ndcg@20"]
    rnd = evaluate_candidates(
        np.random.default_rng(seed + 1).standard_normal((n_users, 8)).astype(np.float32),
        np.random.default_rng(seed + 2).standard_normal((n_items, 8)).astype(np.float32),
        warm,
        split.warm_val,
        seen,
        (20,),
    )["ndcg@20"]
    learnt = bool(ndcg >= CLEARLY_BETTER * max(pop, rnd))
    out = {
        "warm_val_ndcg@20": float(ndcg),
        "popularity_ndcg@20": float(pop),
        "random_ndcg@20": float(rnd),
        "learnt": learnt,
        "warning": None,
    }
    if not learnt:
        out["warning"] = (
            f"{subject} warm-validation NDCG@20 ({ndcg:.4f}) is not clearly better than popularity "
            f"({pop:.4f}) or random ({rnd:.4f}): its space carries little that generalises, and every "
            "proxy "
            f"imitates it; {advice}"
        )
        log.warning("%s", out["warning"])
    return out


def train_id_model_checked(
    n_users: int, n_items: int, split: ColdStartSplit, settings, progress: bool = True
) -> tuple[np.ndarray, np.ndarray, dict]:
    """``train_id_model``; when its diagnostics say it learnt nothing that generalises and
    ``settings.id_fallback`` is on, also the other architecture and the same one with 10x the L2,
    keeping the warm-validation best (the test split is never looked at). The log's ``type`` names
    what was kept; ``fallback`` every candidate's warm-validation NDCG@20."""
    U, I, first = train_id_model(n_users, n_items, split, settings, progress)
    first["type"] = settings.id_model
    if first["diagnostics"]["learnt"] or not settings.id_fallback:
        return U, I, first
    other = "lightgcn" if settings.id_model == "mf" else "mf"
    tried = {settings.id_model: (U, I, first)}
    for name, update in (
        (other, {"id_model": other}),
        (f"{settings.id_model}-l2x10", {"id_reg": 10 * settings.id_reg}),
    ):
        Un, In, lg = train_id_model(n_users, n_items, split, settings.model_copy(update=update), progress)
        tried[name] = (Un, In, lg | {"type": update.get("id_model", settings.id_model)})
    best = max(tried, key=lambda k: tried[k][2]["best_warm_val_ndcg@20"])
    U, I, chosen = tried[best]
    chosen["fallback"] = {
        "chosen": best,
        "chosen_on": "warm-validation NDCG@20",
        "warm_val_ndcg@20": {k: v[2]["best_warm_val_ndcg@20"] for k, v in tried.items()},
    }
    log.warning("ID model fallback: kept %s (warm-validation NDCG@20 %s)", best, chosen["fallback"]["warm_val_ndcg@20"])
    return U, I, chosen
