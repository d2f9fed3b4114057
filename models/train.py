"""Staged training of the default bundle: data -> split -> features -> ID model -> proxy.

``train`` returns everything in memory (the benchmark uses it directly); ``save_checkpoint`` writes
what ``export`` needs into ``work_dir``: the proxy weights, the ID embeddings with their external IDs,
the warm items' content features, and ``metrics.json``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from models.data import ColdStartSplit, Dataset, cold_start_split, load_dataset
from models.evaluate import evaluate_split
from models.features import Features, extract_features
from models.idmodel import train_mf
from models.proxy import ProxyMLP, predict, train_proxy

@dataclass
class TrainResult:
    settings: object
    dataset: Dataset
    split: ColdStartSplit
    features: Features
    user_emb: np.ndarray
    item_emb: np.ndarray  # ID embeddings, zero rows for cold items
    proxy: ProxyMLP
    metrics: dict

    def served_item_emb(self) -> np.ndarray:
        """What the service would answer per item: ID embedding if warm, proxy otherwise."""
        out = self.item_emb.copy()
        cold = np.setdiff1d(np.arange(self.dataset.n_items), self.split.warm_items)
        out[cold] = predict(self.proxy, self.features, cold)
        return out


def train(s, progress: bool = True) -> TrainResult:
    t0 = time.time()
    ds = load_dataset(s)
    split = cold_start_split(ds, s.seed, s.split_ratios)
    feats = extract_features(ds, s.cache_dir, s.text_max_len, s.encode_batch, progress)
    t_feat = time.time()
    U, I, id_log = train_mf(ds.n_users, ds.n_items, split, s, progress)
    t_id = time.time()
    proxy, proxy_log = train_proxy(feats, split, U, I, s, progress=progress)
    result = TrainResult(s, ds, split, feats, U, I, proxy, {})
    result.metrics = {
        "dataset": ds.provenance | {"name": ds.name, "users": ds.n_users, "items": ds.n_items, "interactions": len(ds.items)},
        "split": {
            "seed": s.seed, "ratios": list(s.split_ratios), "warm_items": len(split.warm_items),
            "val_cold_items": len(split.val_items), "test_cold_items": len(split.test_items),
            "train_interactions": len(split.train),
        },
        "id_model": {"type": "mf-bpr", **{k: v for k, v in id_log.items() if k != "history"}},
        "proxy": {"type": "mlp", **{k: v for k, v in proxy_log.items() if k != "history"}},
        "test": evaluate_split(U, result.served_item_emb(), split),
        "seconds": {"features": t_feat - t0, "id_model": t_id - t_feat, "proxy": time.time() - t_id},
        "history": {"id_model": id_log["history"], "proxy": proxy_log["history"]},
    }
    return result


def save_checkpoint(r: TrainResult, work_dir: Path) -> Path:
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    p = r.proxy
    torch.save(
        {"state_dict": p.state_dict(), "config": {"text_dim": p.text_dim, "image_dim": p.image_dim, "out_dim": p.out_dim,
                                                   "hidden": r.settings.proxy_hidden, "dropout": r.settings.proxy_dropout}},
        work_dir / "proxy.pt",
    )
    warm = r.split.warm_items
    np.savez(
        work_dir / "embeddings.npz",
        user_ids=np.array(r.dataset.user_ids), user_emb=r.user_emb,
        item_ids=np.array([r.dataset.item_ids[i] for i in warm]), item_emb=r.item_emb[warm],
        item_text=r.features.text[warm], item_image=r.features.image[warm],
        item_mask=r.features.mask[warm],
    )
    (work_dir / "metrics.json").write_text(json.dumps(r.metrics, indent=2, default=float))
    return work_dir


def load_proxy(work_dir: Path) -> ProxyMLP:
    ck = torch.load(Path(work_dir) / "proxy.pt", weights_only=True)
    c = ck["config"]
    model = ProxyMLP(c["text_dim"], c["image_dim"], c["out_dim"], c["hidden"], c["dropout"])
    model.load_state_dict(ck["state_dict"])
    return model.eval()
