"""Watching what a package serves for new items, in Prometheus: how far new items' vectors drift from the
warm items' (norm against the warm items' mean norm, cosine with the warm items' mean direction), the
fusion and expert weights behind them, and the graduation check -- when the warm-up path receives the ID
embedding the recommender learnt for a new item, how well the item's proxy agreed with it (cosine, and the
correlation of the two vectors' scores over a fixed sample of users). Every series carries the package
version, so a shadow or canary package is seen beside the serving one.
"""

from __future__ import annotations

import numpy as np

from service.metrics import Metrics

SCORE_SAMPLE_USERS = 1000


class DriftMonitor:
    def __init__(
        self, metrics: Metrics, version: str, user_emb: np.ndarray, warm_emb: np.ndarray, experts: tuple[str, ...]
    ):
        self.metrics, self.version, self.experts = metrics, version, experts
        norms = np.linalg.norm(warm_emb, axis=1)
        self.warm_norm = float(norms.mean()) if len(norms) else 1.0
        mean = warm_emb.mean(axis=0) if len(warm_emb) else np.zeros(warm_emb.shape[1], np.float32)
        self.warm_direction = mean / max(float(np.linalg.norm(mean)), 1e-12)
        rows = np.random.default_rng(0).permutation(len(user_emb))[:SCORE_SAMPLE_USERS]
        self.users = user_emb[np.sort(rows)]

    def observe(self, emb: np.ndarray, fusion: np.ndarray | None, experts: np.ndarray | None) -> None:
        """One new item's served vector and the weights that made it."""
        m, v = self.metrics, self.version
        norm = float(np.linalg.norm(emb))
        m.proxy_norm_ratio.labels(v).observe(norm / max(self.warm_norm, 1e-12))
        m.proxy_warm_cosine.labels(v).observe(float(emb @ self.warm_direction) / max(norm, 1e-12))
        if fusion is not None:
            for name, w in zip(("text", "image"), fusion):
                m.fusion_weight.labels(v, name).observe(float(w))
        if experts is not None:
            for name, w in zip(self.experts, experts):
                m.expert_weight.labels(v, name).observe(float(w))

    def graduation(self, proxy: np.ndarray, id_emb: np.ndarray) -> tuple[float, float]:
        """A new item's learnt ID embedding arrived: record and return (cosine, score correlation) with its proxy."""
        cos = float(proxy @ id_emb) / max(float(np.linalg.norm(proxy) * np.linalg.norm(id_emb)), 1e-12)
        a, b = self.users @ proxy, self.users @ id_emb
        corr = float(np.corrcoef(a, b)[0, 1]) if len(a) > 1 and a.std() > 0 and b.std() > 0 else 0.0
        self.metrics.graduation_cosine.labels(self.version).observe(cos)
        self.metrics.graduation_score_corr.labels(self.version).observe(corr)
        return cos, corr
