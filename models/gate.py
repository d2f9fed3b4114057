"""Cold-aware gate over experts (MoDiffE §4.3.1, eq. 18) and its training with cold-start gating
augmentation (§4.4.2, eq. 23).

Experts, in this order (``coldproxy.experts.EXPERTS``): the item's ID embedding (only when it has
one), the content proxy, the diffusion proxy, and the similarity anchor itself (content-kNN: the mean
ID embedding of the most similar warm items, the strongest signal where items come in near-duplicate
variants; issue 21). The gate is a linear map of cold-aware features — log(1 + interaction count), text
present, image present — followed by a softmax over the *available* experts (an absent ID
embedding is masked out, never weighted as zeros). The served embedding is Σ_k g_k · expert_k.

Training (stage 4 of Alg. 3): BPR on warm interactions the ID model did not train on (its held-out
warm-validation slice, so a rarely seen item's ID embedding is judged on new data), plus pseudo-cold
items: a user's two positives interpolated with λ ~ Beta(α, α), count 0 and no ID embedding,
η pseudo triples per real one. Early stopping on the mean of validation-cold NDCG@20 (new items:
proxy vs diffusion) and warm-validation NDCG@20 (known items: ID vs content, by count).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn.functional import mse_loss

from coldproxy.experts import EXPERTS, GATE_FEATURES
from models.data import Interactions
from models.evaluate import evaluate_candidates, validation_cold_ndcg
from models.split import ColdStartSplit
from models.training import EarlyStopping, bpr_loss, epoch_rows, fit, seed_everything


class ColdAwareGate(nn.Module):
    def __init__(self, n_features: int = len(GATE_FEATURES), n_experts: int = len(EXPERTS)):
        super().__init__()
        self.lin = nn.Linear(n_features, n_experts)
        nn.init.zeros_(self.lin.weight)
        nn.init.zeros_(self.lin.bias)

    def weights(self, features: torch.Tensor, available: torch.Tensor) -> torch.Tensor:
        logits = self.lin(features) + (available - 1.0) * 1e4
        return torch.softmax(logits, dim=-1) * available

    def forward(self, features, available, *experts):
        """Serving graph: (features [B,3], available [B,K], K experts [B,d]) -> (embedding, weights)."""
        return mix(self.weights(features, available), experts)


def mix(weights: torch.Tensor, experts) -> tuple[torch.Tensor, torch.Tensor]:
    """(Σ_k w_k · expert_k, w) for weights [B, K] and K experts [B, d]."""
    emb = weights[:, 0:1] * experts[0]
    for k in range(1, len(experts)):
        emb = emb + weights[:, k : k + 1] * experts[k]
    return emb, weights


class PositivesByUser:
    """The gates' training draws over one set of interactions (the item gate's and the bundle gates'):
    BPR triples, pseudo-cold triples, and for interaction rows another positive of the same user
    (possibly the same item). The interactions are sorted by user once, not per batch."""

    def __init__(self, inter: Interactions):
        self.inter, self.order = inter, np.argsort(inter.users, kind="stable")
        self.users_sorted = inter.users[self.order]

    def draw(self, rng: np.random.Generator, rows: np.ndarray) -> np.ndarray:
        start = np.searchsorted(self.users_sorted, self.inter.users[rows], "left")
        end = np.searchsorted(self.users_sorted, self.inter.users[rows], "right")
        pick = start + (rng.random(len(rows)) * (end - start)).astype(np.int64)
        return self.inter.items[self.order[pick]]

    def triples(self, rng: np.random.Generator, rows: np.ndarray, warm: np.ndarray):
        """BPR triples of a batch's interaction ``rows``: (users, positives, negatives drawn from ``warm``)."""
        return (
            torch.from_numpy(self.inter.users[rows]),
            torch.from_numpy(self.inter.items[rows]),
            torch.from_numpy(warm[rng.integers(0, len(warm), len(rows))]),
        )

    def pseudo_cold(self, rng: np.random.Generator, rows: np.ndarray, warm: np.ndarray, count: int):
        """Draws for ``n`` pseudo-cold triples of a batch (mixup, IDProxy-style augmentation): ``n`` of its
        interaction ``rows``; for each, two positives of that row's user to mix (the row's item and
        another) and two random ``warm`` items to mix as the negative. Returns (rows, p1, p2, n1, n2)."""
        r = rows[rng.integers(0, len(rows), count)]
        p1, p2 = torch.from_numpy(self.inter.items[r]), torch.from_numpy(self.draw(rng, r))
        n1, n2 = (torch.from_numpy(warm[rng.integers(0, len(warm), count)]) for _ in range(2))
        return r, p1, p2, n1, n2


def train_gate(
    experts: np.ndarray,
    available: np.ndarray,
    features: np.ndarray,
    user_emb: np.ndarray,
    split: ColdStartSplit,
    settings,
    progress: bool = True,
    desc: str = "cold-aware gate",
    loss: str = "bpr",
    epochs: int | None = None,
) -> tuple[ColdAwareGate, dict]:
    """``experts`` [N, K, d] (the ID embedding first), ``available`` [N, K], ``features`` [N, 3] over all
    items (rows = item index). ``loss``: "bpr" against the users, or "mse" (a given space of item vectors only,
    no users to rank for): the mix regressed onto the item's vector, a pseudo-cold mix onto the same mix of its
    two items' vectors. With ``epochs`` (a refit on all the data, whose split has no held-out interactions: it
    trains on every one): exactly that many, nothing validated."""
    if loss not in ("bpr", "mse"):
        raise ValueError(f"unknown gate loss {loss!r}")
    rng = seed_everything(settings.seed)
    gate = ColdAwareGate(features.shape[1], experts.shape[1])
    opt = torch.optim.Adam(gate.parameters(), lr=settings.gate_lr)
    E, A, Fe, U = (torch.from_numpy(x.astype(np.float32)) for x in (experts, available, features, user_emb))
    inter = split.warm_val if len(split.warm_val) else split.train
    partners = PositivesByUser(inter)
    warm = split.warm_items
    n_aug = int(round(settings.gate_aug_ratio * settings.gate_batch))
    beta = torch.distributions.Beta(torch.tensor(settings.gate_aug_alpha), torch.tensor(settings.gate_aug_alpha))
    torch.manual_seed(settings.seed)
    no_id = torch.ones(experts.shape[1])
    no_id[0] = 0.0

    def embed(items_a, items_b=None, lam=None):
        if items_b is None:
            return gate(Fe[items_a], A[items_a], *E[items_a].unbind(1))[0]
        l3 = lam[:, None, None]
        e = l3 * E[items_a] + (1 - l3) * E[items_b]
        f = torch.where(lam[:, None] >= 0.5, Fe[items_a], Fe[items_b]).clone()
        f[:, 0] = 0.0  # count 0: a pseudo-cold item
        a = (torch.where(lam[:, None] >= 0.5, A[items_a], A[items_b]) * no_id).clamp(max=1.0)
        return gate(f, a, *e.unbind(1))[0]

    val_probe = np.zeros((experts.shape[0], experts.shape[2]), np.float32)
    stopper = EarlyStopping(settings.patience, epochs)

    def step(epoch: int) -> dict:
        perm = epoch_rows(rng, len(inter), settings.gate_batch, settings.gate_steps_per_epoch)
        total = 0.0
        for b in range(0, len(perm), settings.gate_batch):
            rows = perm[b : b + settings.gate_batch]
            users, pos, neg = partners.triples(rng, rows, warm)
            if loss == "mse":  # the item's own vector is the target; a pseudo-cold item mixes two random warm ones
                batch_loss = mse_loss(embed(pos), E[pos, 0])
                if n_aug > 0:
                    a, b = (torch.from_numpy(warm[rng.integers(0, len(warm), n_aug)]) for _ in range(2))
                    lam = beta.sample((n_aug,))
                    target = lam[:, None] * E[a, 0] + (1 - lam[:, None]) * E[b, 0]
                    batch_loss = batch_loss + settings.gate_aug_ratio * mse_loss(embed(a, b, lam), target)
            else:
                u = U[users]
                batch_loss = bpr_loss((u * embed(pos)).sum(-1), (u * embed(neg)).sum(-1))
                if n_aug > 0:
                    r, p1, p2, n1, n2 = partners.pseudo_cold(rng, rows, warm, n_aug)
                    ua = U[torch.from_numpy(inter.users[r])]
                    lam = beta.sample((n_aug,))
                    pseudo = bpr_loss((ua * embed(p1, p2, lam)).sum(-1), (ua * embed(n1, n2, lam)).sum(-1))
                    batch_loss = batch_loss + settings.gate_aug_ratio * pseudo
            opt.zero_grad()
            batch_loss.backward()
            opt.step()
            total += batch_loss.item() * len(rows)
        return {"loss": total / len(perm)}

    def score() -> dict:
        with torch.no_grad():
            for items in (split.val_items, warm):
                val_probe[items] = embed(torch.from_numpy(items)).numpy()
        cold = validation_cold_ndcg(user_emb, val_probe, split)
        known = (
            evaluate_candidates(user_emb, val_probe, warm, inter, split.train, (20,))["ndcg@20"]
            if inter is not split.train
            else cold
        )
        return {"val_cold_ndcg@20": cold, "warm_val_ndcg@20": known}

    def snapshot():
        return {k: v.clone() for k, v in gate.state_dict().items()}

    log = fit(
        settings.gate_epochs,
        step,
        score,
        stopper,
        snapshot,
        desc=desc,
        progress=progress,
        criterion=lambda e: 0.5 * (e["val_cold_ndcg@20"] + e["warm_val_ndcg@20"]),
    )
    gate.load_state_dict(stopper.state)
    gate.eval()
    out = {"epochs_run": len(log), "best_epoch": stopper.best_epoch, "history": log}
    return gate, out | ({"best_val_mean_ndcg@20": stopper.best} if stopper.validating else {})
