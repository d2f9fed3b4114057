"""Cold-start baselines on the same split and metrics: random, content-kNN, CB2CF regression."""

from __future__ import annotations

import faiss
import numpy as np

from models.data import ColdStartSplit
from models.features import Features
from models.proxy import predict, train_proxy


def content_vectors(f: Features) -> np.ndarray:
    """Cosine-ready content vector: [text; l2(image)] with missing parts zeroed, l2-normalised."""
    img = f.image / np.maximum(np.linalg.norm(f.image, axis=1, keepdims=True), 1e-12)
    v = np.concatenate([f.text * f.has_text[:, None], img * f.has_image[:, None]], axis=1).astype(np.float32)
    return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)


def random_embeddings(item_emb: np.ndarray, items: np.ndarray, seed: int) -> np.ndarray:
    out = item_emb.copy()
    out[items] = np.random.default_rng(seed).normal(size=(len(items), item_emb.shape[1])).astype(np.float32)
    return out


def knn_embeddings(f: Features, item_emb: np.ndarray, warm: np.ndarray, items: np.ndarray, n: int = 5) -> np.ndarray:
    """Each item in ``items`` gets the mean ID embedding of its ``n`` nearest warm items by content (FAISS, IP on unit vectors)."""
    vec = content_vectors(f)
    index = faiss.IndexFlatIP(vec.shape[1])
    index.add(vec[warm])
    _, nn_idx = index.search(vec[items], n)
    out = item_emb.copy()
    out[items] = item_emb[warm[nn_idx]].mean(axis=1)
    return out


def cb2cf_embeddings(f: Features, split: ColdStartSplit, user_emb, item_emb, items, s, progress=True):
    """CB2CF-style: an MLP regressing content onto ID embeddings with MSE only."""
    model, log = train_proxy(f, split, user_emb, item_emb, s, bpr_weight=0.0, mse_weight=1.0, desc="CB2CF", progress=progress)
    out = item_emb.copy()
    out[items] = predict(model, f, items)
    return out, log
