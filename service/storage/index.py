"""FAISS inner-product index over warm + cold items, with string item IDs.

It also keeps each item's vector by ID (a plain float32 matrix beside FAISS), so reads of items
this replica has indexed (GET, rank) are answered from memory without a Redis round trip.

Two kinds (``COLDPROXY_INDEX``): ``flat`` searches exactly (cost linear in the catalogue); ``hnsw`` is
FAISS's HNSW graph (approximate, logarithmic), built incrementally as items arrive. HNSW cannot remove a
vector, so an overwritten item gets a new graph node and its old one is skipped in results (searches
fetch that many more candidates).
"""

from __future__ import annotations

import threading

import faiss
import numpy as np


class ItemIndex:
    def __init__(self, dim: int, kind: str = "flat", hnsw_m: int = 32, hnsw_ef_construction: int = 80,
                 hnsw_ef_search: int = 128):
        self.kind = kind
        if kind == "hnsw":
            self._index = faiss.IndexHNSWFlat(dim, hnsw_m, faiss.METRIC_INNER_PRODUCT)
            self._index.hnsw.efConstruction, self._index.hnsw.efSearch = hnsw_ef_construction, hnsw_ef_search
            self._node_row: list[int] = []  # HNSW node -> row; a row's live node is _row_node[row]
            self._row_node: dict[int, int] = {}
        elif kind == "flat":
            self._index = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
        else:
            raise ValueError(f"unknown index kind {kind!r}: flat or hnsw")
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
    def stale(self) -> int:
        """HNSW nodes of overwritten items, skipped in results (0 for flat)."""
        return len(self._node_row) - len(self._row_node) if self.kind == "hnsw" else 0

    def upsert(self, item_ids: list[str], emb: np.ndarray) -> None:
        with self._lock:
            if self.kind == "flat":
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
            if self.kind == "flat":
                self._index.add_with_ids(emb, np.array(rows, dtype=np.int64))
            else:
                first = len(self._node_row)
                self._index.add(emb)
                self._node_row.extend(rows)
                self._row_node.update((r, first + k) for k, r in enumerate(rows))
            if len(self._ids) > len(self._vecs):
                grown = np.zeros((max(len(self._ids), 2 * len(self._vecs)), emb.shape[1]), np.float32)
                grown[: len(self._vecs)] = self._vecs
                self._vecs = grown
            self._vecs[rows] = emb

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
            if self.kind == "flat":
                scores, rows = self._index.search(q, k)
                return [(self._ids[r], float(s)) for s, r in zip(scores[0], rows[0]) if r >= 0]
            scores, nodes = self._index.search(q, min(self._index.ntotal, k + self.stale) or 1)
            hits = []
            for s, n in zip(scores[0], nodes[0]):
                if n >= 0 and self._row_node[self._node_row[n]] == n:  # the item's live node, not an overwritten one
                    hits.append((self._ids[self._node_row[n]], float(s)))
                    if len(hits) == k:
                        break
            return hits
