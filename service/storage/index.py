"""FAISS inner-product index over warm + cold items, with string item IDs.

It also keeps each item's vector by ID (a plain float32 matrix beside FAISS), so reads of items
this replica has indexed (GET, rank) are answered from memory without a Redis round trip.
"""

from __future__ import annotations

import threading

import faiss
import numpy as np


class ItemIndex:
    def __init__(self, dim: int):
        self._index = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
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
        with self._lock:
            scores, rows = self._index.search(np.ascontiguousarray(query[None], dtype=np.float32), k)
        return [(self._ids[r], float(s)) for s, r in zip(scores[0], rows[0]) if r >= 0]
