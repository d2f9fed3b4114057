"""FAISS inner-product index over warm + cold items, with string item IDs."""

from __future__ import annotations

import threading

import faiss
import numpy as np


class ItemIndex:
    def __init__(self, dim: int):
        self._index = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
        self._ids: list[str] = []
        self._row: dict[str, int] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._ids)

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
            self._index.add_with_ids(np.ascontiguousarray(emb, dtype=np.float32), np.array(rows, dtype=np.int64))

    def search(self, query: np.ndarray, k: int) -> list[tuple[str, float]]:
        with self._lock:
            scores, rows = self._index.search(np.ascontiguousarray(query[None], dtype=np.float32), k)
        return [(self._ids[r], float(s)) for s, r in zip(scores[0], rows[0]) if r >= 0]
