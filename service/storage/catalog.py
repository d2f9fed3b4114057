"""One servable embedding space: its users, the entries the model knows (warm), and the entries
computed at run time (cold) -- kept in Redis under the model's version and mirrored in this
replica's FAISS index. The service has one for items and, with a bundle recommender, one for bundles;
lookups, ranking and top-k are the same code for both.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

import numpy as np

from coldproxy.config import usable_cores
from coldproxy.ids import ID_RE

from service.storage.index import ItemIndex
from service.metrics import Metrics
from service.storage.store import RedisStore, StoredItem
from service.storage.sync import IndexSync

log = logging.getLogger("coldproxy.catalog")


@dataclass(frozen=True)
class Found:
    """Known entries of a lookup: ``pos`` (their positions in the IDs asked for), ``vectors`` (one row
    each, same order) and ``warm`` (how many leading rows are warm, from the model; the rest are proxies)."""

    pos: np.ndarray
    vectors: np.ndarray
    warm: int

    def source(self, row: int) -> str:
        return "id" if row < self.warm else "proxy"


class Catalog:
    def __init__(self, name: str, user_ids: list[str], user_emb: np.ndarray, warm_ids: list[str], warm_emb: np.ndarray,
                 store: RedisStore, metrics: Metrics, local_reads: bool, index_options: dict | None = None):
        self.name, self.store, self.metrics, self.local_reads = name, store, metrics, local_reads
        self.users = {u: i for i, u in enumerate(user_ids)}
        self.user_emb, self.warm_emb = user_emb, warm_emb
        self.warm = {x: i for i, x in enumerate(warm_ids)}
        self.index = ItemIndex(warm_emb.shape[1], **(index_options or {}))
        self.index.upsert(list(warm_ids), warm_emb)
        self.sync = IndexSync(store, self.index, metrics, self.warm, name)

    async def start(self) -> int:
        """Index every cold entry in the store and follow other replicas' writes; returns how many. With an
        HNSW index, its graph is then built on a background thread while the exact index serves."""
        self.metrics.items_indexed.labels(self.name, "warm").set(len(self.warm))
        n = await self.sync.start()
        if self.index.kind == "hnsw":
            self.metrics.index_ann_ready.labels(self.name).set(0)
            threading.Thread(target=self._build_ann, name=f"coldproxy-hnsw-{self.name}", daemon=True).start()
        return n

    def _build_ann(self) -> None:
        try:
            self.index.build_ann(usable_cores())
            self.metrics.index_ann_ready.labels(self.name).set(1)
        except Exception:
            log.exception("building the HNSW graph failed; searches stay exact")

    async def close(self) -> None:
        await self.sync.stop()
        await self.store.close()

    @property
    def cold_indexed(self) -> int:
        return len(self.index) - len(self.warm)

    def user_vector(self, user_id: str) -> np.ndarray | None:
        row = self.users.get(user_id)
        return None if row is None else self.user_emb[row]

    async def gather(self, ids: list[str]) -> Found:
        """The known ones among ``ids``: warm from the model; cold from this replica's index when it holds
        them (``local_reads``), else from Redis (written by another replica an instant ago). Rows are
        gathered with one fancy index per source, not one array per ID. Raises ``StoreUnavailable``."""
        warm_pos, warm_rows, rest = [], [], []
        get = self.warm.get
        for k, i in enumerate(ids):
            r = get(i)
            if r is None:
                rest.append(k)
            else:
                warm_pos.append(k)
                warm_rows.append(r)
        rest = [k for k in rest if ID_RE.fullmatch(ids[k])]
        pos, parts = [warm_pos], [self.warm_emb[warm_rows]]
        local = 0
        if rest and self.local_reads:
            hit, vecs = self.index.vectors([ids[k] for k in rest])
            pos.append([rest[j] for j in hit])
            parts.append(vecs)
            local, held = len(hit), set(hit)
            rest = [k for j, k in enumerate(rest) if j not in held]
        cold = await self.store.get_many([ids[k] for k in rest])
        if cold:
            pos.append([k for k in rest if ids[k] in cold])
            parts.append(np.stack([cold[ids[k]] for k in pos[-1]]))
        found = Found(np.array([k for p in pos for k in p], np.int64), np.concatenate(parts), len(warm_pos))
        m = self.metrics.lookups
        m.labels(self.name, "id").inc(found.warm)
        m.labels(self.name, "proxy_local").inc(local)
        m.labels(self.name, "proxy_redis").inc(len(cold))
        m.labels(self.name, "miss").inc(len(ids) - len(found.pos))
        return found

    async def lookup(self, ids: list[str]) -> dict[str, tuple[np.ndarray, str]]:
        """id -> (vector, source) for the known ones among ``ids``; see ``gather``."""
        f = await self.gather(ids)
        return {ids[k]: (f.vectors[j], f.source(j)) for j, k in enumerate(f.pos.tolist())}

    async def rank(self, user: np.ndarray, ids: list[str]) -> tuple[list[tuple[str, float, str]], list[str]]:
        """Distinct ``ids`` scored by inner product with ``user``, best first (ties in request order);
        and the unknown ones."""
        ids = list(dict.fromkeys(ids))
        f = await self.gather(ids)
        scores = f.vectors @ user
        order = np.lexsort((f.pos, -scores))
        ranked = [(ids[k], sc, f.source(j))
                  for j, k, sc in zip(order.tolist(), f.pos[order].tolist(), scores[order].tolist())]
        unknown = np.ones(len(ids), bool)
        unknown[f.pos] = False
        return ranked, [ids[k] for k in np.flatnonzero(unknown).tolist()]

    def top_k(self, user: np.ndarray, k: int) -> list[tuple[str, float, str]]:
        return [(i, s, "id" if i in self.warm else "proxy") for i, s in self.index.search(user, k)]

    async def put(self, key: str, record: StoredItem, overwrite: bool, features: np.ndarray | None = None) -> bool:
        """Store in Redis (acknowledged write; with the item's content features when given), then index on this
        replica (others hear of it through the store); False, and nothing written, when ``key`` exists and
        ``overwrite`` is off. Raises ``StoreUnavailable``."""
        with self.metrics.time_stage("store"):
            stored = await self.store.put(key, record, overwrite, features)
        if stored:
            with self.metrics.time_stage("index"):
                self.sync.add([key], record.embedding[None])
        return stored
