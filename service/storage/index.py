"""FAISS inner-product index over warm + cold items, with string item IDs.

It also keeps each item's vector by ID (a plain float32 matrix beside FAISS), so reads of items
this replica has indexed (GET, rank) are answered from memory without a Redis round trip.

Two kinds (``COLDPROXY_INDEX``): ``flat`` searches exactly (cost linear in the catalogue); ``hnsw`` adds
FAISS's HNSW graph (approximate, logarithmic) for catalogues of millions. HNSW over raw inner products
finds neighbours poorly (recall@100 0.64 at 1M items here, bench/results/scale.md), so vectors are mapped
to an L2 problem with the same order (x -> [x, sqrt(B^2 - |x|^2)], q -> [q, 0], B a norm bound fixed
when the graph is built: twice the largest norm then; a later vector above it gets 0 and ranks a little
low) and the candidates are re-scored exactly from the by-ID copy. The graph is built in the background
(``build_ann``) once the replica has loaded its items, on every core, so a replica serves at once from
the exact index and switches to the graph when it is ready; after that it grows as items arrive. HNSW
cannot remove a vector, so an overwritten item gets a new node and its old one is skipped.
"""

from __future__ import annotations

import logging
import threading
import time

import faiss
import numpy as np

log = logging.getLogger("coldproxy.index")


class ItemIndex:
    def __init__(self, dim: int, kind: str = "flat", hnsw_m: int = 32, hnsw_ef_construction: int = 40,
                 hnsw_ef_search: int = 512):
        if kind not in ("flat", "hnsw"):
            raise ValueError(f"unknown index kind {kind!r}: flat or hnsw")
        self.kind, self.dim = kind, dim
        self._index = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))  # exact; rows as IDs
        self._ann: faiss.IndexHNSWFlat | None = None  # over rows' augmented vectors, once built
        self._ann_params = (hnsw_m, hnsw_ef_construction, hnsw_ef_search)
        self._node_row: list[int] = []  # HNSW node -> row; a row's live node is _row_node[row]
        self._row_node: dict[int, int] = {}
        self._bound = 0.0
        self._dirty: list[int] | None = None  # rows upserted while the graph is being built
        self._ids: list[str] = []
        self._row: dict[str, int] = {}
        self._vecs = np.zeros((0, dim), np.float32)  # row -> vector, grown by doubling
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, item_id: str) -> bool:
        return item_id in self._row

    def ids(self) -> list[str]:
        """Every indexed item ID (a copy)."""
        with self._lock:
            return list(self._ids)

    @property
    def ann_ready(self) -> bool:
        return self._ann is not None

    @property
    def stale(self) -> int:
        """HNSW nodes of overwritten items, skipped in results."""
        return len(self._node_row) - len(self._row_node)

    def upsert(self, item_ids: list[str], emb: np.ndarray) -> None:
        with self._lock:
            existing = np.array([self._row[i] for i in item_ids if i in self._row], dtype=np.int64)
            if len(existing):
                self._index.remove_ids(existing)
            rows = []
            for i in item_ids:
                if i not in self._row:
                    self._row[i] = len(self._ids)
                    self._ids.append(i)
                rows.append(self._row[i])
            emb = np.ascontiguousarray(emb, dtype=np.float32)
            self._index.add_with_ids(emb, np.array(rows, dtype=np.int64))
            if len(self._ids) > len(self._vecs):
                grown = np.zeros((max(len(self._ids), 2 * len(self._vecs)), emb.shape[1]), np.float32)
                grown[: len(self._vecs)] = self._vecs
                self._vecs = grown
            self._vecs[rows] = emb
            if self._ann is not None:
                self._ann_add(rows, emb)
            elif self._dirty is not None:
                self._dirty.extend(rows)

    def _augment(self, emb: np.ndarray) -> np.ndarray:
        extra = np.sqrt(np.maximum(self._bound ** 2 - np.einsum("ij,ij->i", emb, emb), 0.0))
        return np.ascontiguousarray(np.concatenate([emb, extra[:, None]], axis=1), dtype=np.float32)

    def _ann_add(self, rows: list[int], emb: np.ndarray) -> None:
        first = self._ann.ntotal
        self._ann.add(self._augment(emb))
        self._node_row.extend(rows)
        self._row_node.update((r, first + k) for k, r in enumerate(rows))

    def build_ann(self, threads: int = 1) -> float:
        """Build the HNSW graph over what is indexed now (on ``threads`` OpenMP threads, outside the lock),
        add what was upserted meanwhile, and switch searches to it. Returns the seconds it took."""
        if self.kind != "hnsw":
            return 0.0
        t = time.perf_counter()
        m, ef_construction, _ = self._ann_params
        with self._lock:
            n, self._dirty = len(self._ids), []
            vecs = self._vecs[:n].copy()
        self._bound = 2.0 * float(np.sqrt(np.einsum("ij,ij->i", vecs, vecs).max(initial=1e-12)))
        ann = faiss.IndexHNSWFlat(self.dim + 1, m)
        ann.hnsw.efConstruction = ef_construction
        faiss.omp_set_num_threads(max(1, threads))
        try:
            ann.add(self._augment(vecs))
        finally:
            faiss.omp_set_num_threads(1)
        with self._lock:
            self._ann, self._node_row, self._row_node = ann, list(range(n)), {r: r for r in range(n)}
            dirty, self._dirty = list(dict.fromkeys(self._dirty)), None
            if dirty:
                self._ann_add(dirty, self._vecs[dirty])
        seconds = time.perf_counter() - t
        log.info("HNSW graph over %d items built in %.1f s; searches use it now", n + len(dirty), seconds)
        return seconds

    def vectors(self, item_ids: list[str]) -> tuple[list[int], np.ndarray]:
        """Which of ``item_ids`` this index holds (their positions in ``item_ids``) and their vectors, one
        row each in that order (a copy): one gather, however many are asked for."""
        get = self._row.get
        with self._lock:
            rows = [get(i) for i in item_ids]
            found = [k for k, r in enumerate(rows) if r is not None]
            vecs = self._vecs[[rows[k] for k in found]]
        return found, vecs

    def search(self, query: np.ndarray, k: int) -> list[tuple[str, float]]:
        q = np.ascontiguousarray(query[None], dtype=np.float32)
        with self._lock:
            if self._ann is None:
                scores, rows = self._index.search(q, k)
                return [(self._ids[r], float(s)) for s, r in zip(scores[0], rows[0]) if r >= 0]
            fetch = min(self._ann.ntotal, k + self.stale) or 1
            params = faiss.SearchParametersHNSW(efSearch=max(self._ann_params[2], fetch))
            _, nodes = self._ann.search(np.concatenate([q, np.zeros((1, 1), np.float32)], axis=1), fetch, params=params)
            rows = [self._node_row[n] for n in nodes[0] if n >= 0 and self._row_node[self._node_row[n]] == n]
            scores = self._vecs[rows] @ q[0]  # exact inner products of the candidates
            order = np.argsort(-scores, kind="stable")[:k]
            return [(self._ids[rows[j]], float(scores[j])) for j in order]
