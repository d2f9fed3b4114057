"""Fine-tuning the text encoder's last transformer layer on the ID space (issue 16).

MiniLM's first five layers stay frozen: their output for every item's text is computed once (torch,
each text trimmed to its own length). The last layer and a linear head onto the ID space are trained
on warm items to regress each item's ID embedding (MSE) and to pick it out of the batch (the PAL
in-batch contrastive loss); early stopping on validation-cold NDCG@20 of the head's vectors. The
fine-tuned layer then recomputes every item's last-layer state: the sentence embedding and the last
of the pooled layers that the generators read. Export puts the layer into the text encoder graph
(``apply_text_layer``), so the service computes the very features training used: still one graph.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from tqdm.auto import tqdm

from models.evaluate import validation_cold_ndcg
from models.features import Features
from models.items.generator import pal_loss
from models.split import ColdStartSplit
from models.training import EarlyStopping, fit, seed_everything

LAYER_FILE = "text_layer.pt"
HEAD_LR = 1e-3  # the new head learns from scratch; the layer moves at settings.text_finetune_lr


class LastLayer(nn.Module):
    """MiniLM's last layer on the frozen penultimate states -> (pooled state [B, 384], ID-space vector)."""

    def __init__(self, layer: nn.Module, out_dim: int):
        super().__init__()
        self.layer = copy.deepcopy(layer)
        self.head = nn.Linear(self.layer.output.dense.out_features, out_dim)

    def pooled(self, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        additive = (1.0 - mask[:, None, None, :]) * torch.finfo(states.dtype).min  # as BERT's eager attention
        out = self.layer(states, attention_mask=additive)
        out = out[0] if isinstance(out, tuple) else out
        m = mask[:, :, None]
        return (out * m).sum(1) / m.sum(1).clamp(min=1e-9)

    def forward(self, states: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pooled = self.pooled(states, mask)
        return pooled, self.head(F.normalize(pooled, dim=-1))


def penultimate_states(
    encoder: nn.Module, texts: list[str], max_len: int, batch: int = 64, progress: bool = True
) -> list[torch.Tensor]:
    """Every text's hidden states entering ``models.encoders.TextEncoder``'s last layer, [tokens, 384]
    each (no padding)."""
    from models.encoders import tokenizer

    tok = tokenizer(max_len)
    out: list[torch.Tensor] = []
    with torch.no_grad():
        for s in tqdm(range(0, len(texts), batch), desc="text states (frozen layers)", disable=not progress):
            feeds = tok(texts[s : s + batch])
            ids, mask = (torch.from_numpy(v) for v in feeds.values())
            states = encoder.bert(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states[-2]
            out += [h[: int(n)].clone() for h, n in zip(states, mask.sum(1))]
    return out


def padded(states: list[torch.Tensor], rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    length = max(len(states[r]) for r in rows)
    x = torch.zeros(len(rows), length, states[rows[0]].shape[1])
    mask = torch.zeros(len(rows), length)
    for k, r in enumerate(rows):
        x[k, : len(states[r])], mask[k, : len(states[r])] = states[r], 1.0
    return x, mask


def batches(
    rows: np.ndarray, lengths: np.ndarray, size: int, rng: np.random.Generator | None = None
) -> list[np.ndarray]:
    """``rows`` in batches of similar length (little padding); with ``rng``, jittered and shuffled."""
    key = lengths[rows] + (rng.uniform(0, 4, len(rows)) if rng is not None else 0)
    ordered = rows[np.argsort(key, kind="stable")]
    out = [ordered[s : s + size] for s in range(0, len(ordered), size)]
    if rng is not None:
        rng.shuffle(out)
    return out


def run(
    model: LastLayer, states: list[torch.Tensor], rows: np.ndarray, lengths: np.ndarray, size: int = 256
) -> tuple[np.ndarray, np.ndarray]:
    """(pooled states, head vectors) for ``rows``, in their order."""
    model.eval()
    pooled = np.zeros((len(rows), model.head.in_features), np.float32)
    vec = np.zeros((len(rows), model.head.out_features), np.float32)
    where = {r: k for k, r in enumerate(rows)}
    with torch.no_grad():
        for b in batches(rows, lengths, size):
            p, v = model(*padded(states, b))
            at = [where[r] for r in b]
            pooled[at], vec[at] = p.numpy(), v.numpy()
    return pooled, vec


def finetune_text_layer(
    texts: list[str],
    features: Features,
    split: ColdStartSplit,
    user_emb: np.ndarray,
    item_emb: np.ndarray,
    settings,
    progress: bool = True,
    epochs: int | None = None,
) -> tuple[Features, dict, dict]:
    """Fine-tune the last layer; returns (features recomputed with it, the layer's state dict, log). Early stopping
    on validation-cold NDCG@20, or exactly ``epochs`` epochs without validation (a refit)."""
    from models.encoders import TextEncoder

    rng = seed_everything(settings.seed)
    encoder = TextEncoder()
    states = [torch.zeros(1, features.text.shape[1])] * len(texts)
    rows = np.flatnonzero(features.has_text)
    for r, st in zip(
        rows,
        penultimate_states(encoder, [texts[r] for r in rows], settings.text_max_len, settings.encode_batch, progress),
    ):
        states[r] = st
    lengths = np.array([len(s) for s in states])
    model = LastLayer(encoder.bert.encoder.layer[-1], item_emb.shape[1])
    opt = torch.optim.AdamW(
        [
            {"params": model.layer.parameters(), "lr": settings.text_finetune_lr},
            {"params": model.head.parameters(), "lr": HEAD_LR},
        ],
        weight_decay=0.01,
    )
    warm = np.intersect1d(split.warm_items, rows)
    val = np.intersect1d(split.val_items, rows)
    targets = torch.from_numpy(item_emb)
    stopper = EarlyStopping(settings.patience, epochs)
    probe = np.zeros_like(item_emb)

    def step(epoch: int) -> dict:
        model.train()
        total = 0.0
        for b in batches(warm, lengths, settings.text_finetune_batch, rng):
            _, v = model(*padded(states, b))
            t = targets[b]
            loss = F.mse_loss(v, t) + pal_loss(v, t, settings.pal_temperature)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(b)
        return {"loss": total / len(warm)}

    def score() -> dict:
        probe[:] = 0.0
        probe[val] = run(model, states, val, lengths)[1]
        return {"val_cold_ndcg@20": validation_cold_ndcg(user_emb, probe, split)}

    history = fit(
        settings.text_finetune_epochs,
        step,
        score,
        stopper,
        lambda: copy.deepcopy(model.state_dict()),
        desc="text encoder, last layer",
        progress=progress,
    )
    model.load_state_dict(stopper.state)
    pooled, _ = run(model, states, rows, lengths)
    text_layers = features.text_layers.copy()
    text_layers[rows, -1] = pooled
    text = features.text.copy()
    text[rows] = pooled / np.linalg.norm(pooled, axis=1, keepdims=True).clip(1e-12)
    log = {"best_epoch": stopper.best_epoch, "history": history}
    log |= {"best_val_cold_ndcg@20": stopper.best} if stopper.validating else {}
    return features.replace(text=text, text_layers=text_layers), model.layer.state_dict(), log


def apply_text_layer(encoder: nn.Module, work_dir: Path) -> nn.Module:
    """Put a checkpoint's fine-tuned last layer (if it has one) into ``models.encoders.TextEncoder``."""
    path = Path(work_dir) / LAYER_FILE
    if path.exists():
        encoder.bert.encoder.layer[-1].load_state_dict(torch.load(path, weights_only=True))
    return encoder
