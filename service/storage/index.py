"""FAISS inner-product index over warm + cold items, with string item IDs.

Each item has a row, for good: rows are FAISS's own sequential IDs in a plain ``IndexFlatIP``, so overwriting an
item writes its row in place (O(dim), no ID map to rebuild) and the index's storage doubles as the by-ID copy that
reads of items this replica has indexed (GET, rank) are answered from, without a Redis round trip.

Two kinds (``COLDPROXY_INDEX``): ``flat`` searches exactly (cost linear in the catalogue); ``hnsw`` adds
FAISS's HNSW graph (approximate, logarithmic) for catalogues of millions. HNSW over raw inner products
finds neighbours poorly (recall@100 0.64 at 1M items here, bench/results/scale.md), so vectors are mapped
to an L2 problem with the same order (x -> [x, sqrt(B^2 - |x|^2)], q -> [q, 0], B a norm bound fixed
when the graph is built: twice the largest norm then; a later vector above it gets 0 and ranks a little
low) and the candidates are re-scored exactly from the rows. The graph is built in the background
(``build_ann``) once the replica has loaded its items, on every core, so a replica serves at once from
the exact index and switches to the graph when it is ready; after that it grows as items arrive. HNSW
cannot remove a vector, so an overwritten item gets a new node and its old one is skipped (a search fetches k over
the live share of the nodes, more only if too few of them come back live); once stale nodes pass ``compact_share``
of the graph, it is rebuilt on a background thread while the old one serves.

A removed item (a take-down, a hidden warm item) keeps its row, marked dead: exact searches pass FAISS a bitmap of
the live rows, the graph treats its node as stale, and upserting the ID again revives the row. Each row also keeps
when its item was first indexed (``posted``: 0 for the package's warm items), for searches of items posted after a
time; a search with such a filter, or within a range of rows, is exact.
"""

from __future__ import annotations

import logging
import threading
import time

import faiss
import numpy as np

log = logging.getLogger("coldproxy.index")


class ItemIndex:
    def __init__(
        self,
        dim: int,
        kind: str = "flat",
        hnsw_m: int = 32,
        hnsw_ef_construction: int = 40,
        hnsw_ef_search: int = 512,
        compact_share: float = 0.2,
    ):
        if kind not in ("flat", "hnsw"):
            raise ValueError(f"unknown index kind {kind!r}: flat or hnsw")
        self.kind, self.dim, self.compact_share = kind, dim, compact_share
        self._flat = faiss.IndexFlatIP(dim)  # exact; FAISS's sequential IDs are the rows
        self._ann: faiss.IndexHNSWFlat | None = None  # over rows' augmented vectors, once built
        self._ann_params = (hnsw_m, hnsw_ef_construction, hnsw_ef_search)
        self._node_row: list[int] = []  # HNSW node -> row; a row's live node is _row_node[row]
        self._row_node: dict[int, int] = {}
        self._bound = 0.0
        self._dirty: list[int] | None = None  # rows upserted while the graph is being (re)built
        self._ids: list[str] = []  # row -> ID, dead rows included
        self._row: dict[str, int] = {}  # live ID -> row
        self._dead: dict[str, int] = {}  # removed ID -> its row, revived if the ID comes back
        self._alive = np.zeros(0, bool)  # per row (capacity grows by doubling)
        self._posted = np.zeros(0, np.float64)
        self._live_selector = None  # (bitmap, selector) over the live rows while some are dead; None: rebuild
        self._lock = threading.Lock()

    def __len__(self) -> int:
        """How many items are indexed (removed ones not counted)."""
        return len(self._row)

    def __contains__(self, item_id: str) -> bool:
        return item_id in self._row

    def ids(self) -> list[str]:
        """Every indexed item ID (a copy), in row order."""
        with self._lock:
            return [i for i in self._ids if i in self._row]

    @property
    def ann_ready(self) -> bool:
        return self._ann is not None

    @property
    def stale(self) -> int:
        """HNSW nodes of overwritten items, skipped in results."""
        return len(self._node_row) - len(self._row_node)

    def _rows(self) -> np.ndarray:
        """The flat index's storage as a (rows, dim) array: a view, valid until the next ``add`` (under the lock)."""
        n = self._flat.ntotal
        if n == 0:
            return np.zeros((0, self.dim), np.float32)
        return faiss.rev_swig_ptr(self._flat.get_xb(), n * self.dim).reshape(n, self.dim)

    def _grow(self, n: int) -> None:
        if n > len(self._alive):
            size = max(n, 2 * len(self._alive), 1024)
            self._alive = np.concatenate([self._alive, np.zeros(size - len(self._alive), bool)])
            self._posted = np.concatenate([self._posted, np.zeros(size - len(self._posted))])

    def upsert(self, item_ids: list[str], emb: np.ndarray, posted: np.ndarray | float | None = None) -> None:
        """Index new items and overwrite known ones' rows in place: O(items x dim) however large the index.
        ``posted``: when each item was first stored (a value or one per item); None: now for a new or revived
        row, unchanged for a known one."""
        emb = np.ascontiguousarray(emb, dtype=np.float32)
        when = None if posted is None else np.broadcast_to(np.asarray(posted, np.float64), (len(item_ids),))
        now = time.time()
        with self._lock:
            rows, new, fresh = [], [], []
            for k, i in enumerate(item_ids):
                r = self._row.get(i)
                if r is None:
                    r = self._dead.pop(i, None)
                    if r is None:
                        r = len(self._ids)
                        self._ids.append(i)
                        new.append(k)
                    self._row[i] = r
                    fresh.append(r)
                rows.append(r)
            self._grow(len(self._ids))
            if fresh:
                self._alive[fresh] = True
                self._posted[fresh] = now
                self._live_selector = None
            if when is not None:
                self._posted[rows] = when
            if new:
                self._flat.add(emb[new])
            self._rows()[rows] = emb  # (a repeated ID: its last vector)
            if self._ann is not None:
                self._ann_add(rows, emb)
            if self._dirty is not None:
                self._dirty.extend(rows)
            compact = self._claim_compaction()
        if compact:
            self._compact()

    def _claim_compaction(self) -> bool:
        """Whether stale nodes have passed ``compact_share`` of the graph and no rebuild runs: then this caller
        claims the rebuild (under the lock: one at a time)."""
        compact = (
            self._ann is not None and self._dirty is None and self.stale > self.compact_share * max(1, self._ann.ntotal)
        )
        if compact:
            self._dirty = []
        return compact

    def _compact(self) -> None:
        threading.Thread(target=self.build_ann, name="coldproxy-hnsw-compact", daemon=True).start()

    def remove(self, item_ids: list[str]) -> list[str]:
        """Leave ``item_ids`` out of every search and lookup from now on (their rows are kept, dead); returns those
        that were indexed."""
        with self._lock:
            removed = [i for i in dict.fromkeys(item_ids) if i in self._row]
            for i in removed:
                r = self._dead[i] = self._row.pop(i)
                self._alive[r] = False
                self._row_node.pop(r, None)  # its graph node is stale from now on
            if removed:
                self._live_selector = None
            compact = self._claim_compaction()
        if compact:
            self._compact()
        return removed

    def _augment(self, emb: np.ndarray, bound: float | None = None) -> np.ndarray:
        bound = self._bound if bound is None else bound
        extra = np.sqrt(np.maximum(bound**2 - np.einsum("ij,ij->i", emb, emb), 0.0))
        return np.ascontiguousarray(np.concatenate([emb, extra[:, None]], axis=1), dtype=np.float32)

    def _ann_add(self, rows: list[int], emb: np.ndarray) -> None:
        first = self._ann.ntotal
        self._ann.add(self._augment(emb))
        self._node_row.extend(rows)
        self._row_node.update((r, first + k) for k, r in enumerate(rows))

    def build_ann(self, threads: int = 1) -> float:
        """Build the HNSW graph over what is indexed now (on ``threads`` OpenMP threads, outside the lock; an existing
        graph keeps serving meanwhile), add what was upserted since, and switch searches to it. Also how stale nodes
        are compacted away. Returns the seconds it took."""
        if self.kind != "hnsw":
            return 0.0
        t = time.perf_counter()
        m, ef_construction, _ = self._ann_params
        with self._lock:
            self._dirty = []
            live = np.flatnonzero(self._alive[: len(self._ids)])
            vecs = self._rows()[live]
        n = len(live)
        bound = 2.0 * float(np.sqrt(np.einsum("ij,ij->i", vecs, vecs).max(initial=1e-12)))
        ann = faiss.IndexHNSWFlat(self.dim + 1, m)
        ann.hnsw.efConstruction = ef_construction
        faiss.omp_set_num_threads(max(1, threads))
        try:
            ann.add(self._augment(vecs, bound))
        except BaseException:
            with self._lock:
                self._dirty = None
            raise
        finally:
            faiss.omp_set_num_threads(1)
        with self._lock:
            rebuilt = self._ann is not None
            alive = self._alive  # (rows removed while it was built: stale at once)
            rows = live.tolist()
            self._ann, self._node_row, self._bound = ann, rows, bound
            self._row_node = {r: k for k, r in enumerate(rows) if alive[r]}
            dirty, self._dirty = [r for r in dict.fromkeys(self._dirty) if alive[r]], None
            if dirty:
                self._ann_add(dirty, self._rows()[dirty])
        seconds = time.perf_counter() - t
        log.info(
            "HNSW graph over %d items %s in %.1f s; searches use it now",
            n + len(dirty),
            "rebuilt without its stale nodes" if rebuilt else "built",
            seconds,
        )
        return seconds

    def vectors(self, item_ids: list[str]) -> tuple[list[int], np.ndarray]:
        """Which of ``item_ids`` this index holds (their positions in ``item_ids``) and their vectors, one
        row each in that order (a copy): one gather, however many are asked for."""
        get = self._row.get
        with self._lock:
            rows = [get(i) for i in item_ids]
            found = [k for k, r in enumerate(rows) if r is not None]
            vecs = self._rows()[[rows[k] for k in found]]
        return found, vecs

    def row_numbers(self, item_ids: list[str]) -> list[int]:
        """The rows of those of ``item_ids`` this index holds."""
        return [r for r in map(self._row.get, item_ids) if r is not None]

    def _selector(self, within: tuple[int, int] | None, after: float | None):
        """FAISS's selector of the rows a search may return (live, in ``within``, posted after ``after``), with the
        bitmap it reads (to keep alive while it is used); None when every row may be. Under the lock."""
        n = len(self._ids)
        if within is None and after is None:
            if len(self._row) == n:
                return None
            if self._live_selector is None:
                bitmap = np.packbits(self._alive[:n], bitorder="little")
                self._live_selector = (bitmap, faiss.IDSelectorBitmap(bitmap))
            return self._live_selector
        if within is not None and after is None and len(self._row) == n:
            return None, faiss.IDSelectorRange(*within)
        mask = self._alive[:n].copy()
        if within is not None:
            mask[: within[0]] = False
            mask[within[1] :] = False
        if after is not None:
            mask &= self._posted[:n] > after
        bitmap = np.packbits(mask, bitorder="little")
        return bitmap, faiss.IDSelectorBitmap(bitmap)

    def search(
        self,
        query: np.ndarray,
        k: int,
        exclude: frozenset[int] = frozenset(),
        within: tuple[int, int] | None = None,
        after: float | None = None,
    ) -> list[tuple[str, float]]:
        """The ``k`` best live rows for ``query`` (inner product), leaving out the rows in ``exclude`` (the exact
        search fetches k + len(exclude) and drops them; the graph search skips them), so k come back whenever the
        index holds that many others.
        ``within``: only rows in [start, stop); ``after``: only items first indexed after that time (both exact: a
        selector over the flat index)."""
        q = np.ascontiguousarray(query[None], dtype=np.float32)
        with self._lock:
            if self._ann is None or within is not None or after is not None:
                selector = self._selector(within, after)  # (the bitmap kept referenced for the search)
                params = None if selector is None else faiss.SearchParameters(sel=selector[1])
                scores, rows = self._flat.search(q, k + len(exclude), params=params)
                return [(self._ids[r], float(s)) for s, r in zip(scores[0], rows[0]) if r >= 0 and r not in exclude][:k]
            # stale nodes take about their share of any neighbourhood: fetch k over the live share (not k + every
            # stale node, which grew each search with the overwrites), and more only if too few came back live.
            # Excluded rows are left out by the graph search itself (an ID selector over their nodes), so a long
            # exclusion list does not widen the search (issue 59: efSearch grew with k + every excluded row)
            total, live_share = self._ann.ntotal, 1.0 - self.stale / max(1, self._ann.ntotal)
            fetch = min(total, int(k / max(live_share, 0.05)) + 16)
            qa = np.concatenate([q, np.zeros((1, 1), np.float32)], axis=1)
            nodes_out = [self._row_node[r] for r in exclude if r in self._row_node]
            batch = faiss.IDSelectorBatch(np.asarray(nodes_out, dtype=np.int64)) if nodes_out else None
            skip = None if batch is None else faiss.IDSelectorNot(batch)  # (both kept referenced for the search)
            while True:
                params = faiss.SearchParametersHNSW(efSearch=max(self._ann_params[2], fetch), sel=skip)
                _, nodes = self._ann.search(qa, fetch, params=params)
                rows = [
                    self._node_row[n]
                    for n in nodes[0]
                    if n >= 0 and self._row_node.get(self._node_row[n]) == n and self._node_row[n] not in exclude
                ]
                if len(rows) >= min(k, len(self._row) - len(exclude)) or fetch >= total:
                    break
                fetch = min(total, 2 * fetch)
            scores = self._rows()[rows] @ q[0]  # exact inner products of the candidates
            order = np.argsort(-scores, kind="stable")[:k]
            return [(self._ids[rows[j]], float(scores[j])) for j in order]
