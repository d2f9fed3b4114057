"""Content vectors and similarity anchors (MoDiffE eq. 14), shared by training and the service.

An item's content vector is [text; ℓ2(image)] with missing parts zeroed, ℓ2-normalised; its anchor
is the mean ID embedding of its ``n`` most similar warm items by inner product (FAISS), the item
itself excluded when it is warm. numpy + FAISS only: the service imports this without torch.
"""

from __future__ import annotations

import faiss
import numpy as np

# A flat FAISS search scans the database once per query while queries x dim < this threshold, and from
# it on computes all the products in one BLAS call. The scan is memory-bound on content vectors, so
# from 4 queries on one product is faster; below that the scan stays (measured: bench/results/design_measurements.md).
BLAS_FROM_QUERIES = 4


def unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit ℓ2 norm (an all-zero row stays zero)."""
    return (x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)).astype(np.float32)


def content_vectors(text: np.ndarray, image: np.ndarray, modality_mask: np.ndarray) -> np.ndarray:
    v = np.concatenate([text * modality_mask[:, 0:1], unit_rows(image) * modality_mask[:, 1:2]], axis=1)
    return unit_rows(v)


class AnchorIndex:
    """FAISS inner-product index over warm items' content vectors, with their ID embeddings."""

    def __init__(self, warm_vectors: np.ndarray, warm_emb: np.ndarray, neighbours: int = 5):
        self.n, self.emb = neighbours, np.ascontiguousarray(warm_emb, dtype=np.float32)
        self.index = faiss.IndexFlatIP(warm_vectors.shape[1])
        # global; same dim everywhere
        faiss.cvar.distance_compute_blas_threshold = BLAS_FROM_QUERIES * warm_vectors.shape[1]
        self.index.add(np.ascontiguousarray(warm_vectors, dtype=np.float32))

    def neighbours(self, vectors: np.ndarray, exclude: np.ndarray | None = None) -> np.ndarray:
        """Rows of the ``n`` nearest warm items; ``exclude[i]`` (a warm row, or -1) is skipped."""
        k = self.n + (exclude is not None)
        _, idx = self.index.search(np.ascontiguousarray(vectors, dtype=np.float32), k)
        if exclude is None:
            return idx
        keep = idx != exclude[:, None]
        keep[keep.sum(1) > self.n, -1] = False  # self not among them: drop the farthest instead
        return idx[keep].reshape(len(idx), self.n)

    def anchors(self, vectors: np.ndarray, exclude: np.ndarray | None = None) -> np.ndarray:
        return self.emb[self.neighbours(vectors, exclude)].mean(axis=1)
