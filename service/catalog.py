"""One servable embedding space: its users, the entries the model knows (warm), and the entries
computed at run time (cold) -- kept in Redis under the model's version and mirrored in this
replica's FAISS index. The service has one for items and, with a bundle recommender, one for bundles;
lookups, ranking and top-k are the same code for both.
"""

from __future__ import annotations

import numpy as np

from service.index import ItemIndex
from service.metrics import Metrics
from service.schemas import ITEM_ID_RE
from service.store import RedisStore
from service.sync import IndexSync


class Catalog:
    def __init__(self, name: str, user_ids: list[str], user_emb: np.ndarray, warm_ids: list[str], warm_emb: np.ndarray,
                 store: RedisStore, metrics: Metrics, local_reads: bool):
        self.name, self.store, self.metrics, self.local_reads = name, store, metrics, local_reads
        self.users = {u: i for i, u in enumerate(user_ids)}
        self.user_emb, self.warm_emb = user_emb, warm_emb
        self.warm = {x: i for i, x in enumerate(warm_ids)}
        self.index = ItemIndex(warm_emb.shape[1])
        self.index.upsert(list(warm_ids), warm_emb)
        self.sync = IndexSync(store, self.index, metrics, self.warm, name)

    async def start(self) -> int:
        """Index every cold entry in the store and follow other replicas' writes; returns how many."""
        self.metrics.items_indexed.labels(self.name, "warm").set(len(self.warm))
        return await self.sync.start()

    async def close(self) -> None:
        await self.sync.stop()
        await self.store.close()

    @property
    def cold_indexed(self) -> int:
        return len(self.index) - len(self.warm)

    def user_vector(self, user_id: str) -> np.ndarray | None:
        row = self.users.get(user_id)
        return None if row is None else self.user_emb[row]

    async def lookup(self, ids: list[str]) -> dict[str, tuple[np.ndarray, str]]:
        """id -> (vector, source) for the known ones: warm from the model; cold from this replica's index
        when it holds them (``local_reads``), else from Redis (written by another replica an instant ago).
        Raises ``StoreUnavailable``."""
        out = {i: (self.warm_emb[self.warm[i]], "id") for i in ids if i in self.warm}
        rest = [i for i in ids if i not in self.warm and ITEM_ID_RE.fullmatch(i)]
        local = self.index.vectors(rest) if self.local_reads and rest else {}
        cold = await self.store.get_many([i for i in rest if i not in local])
        out.update({i: (v, "proxy") for i, v in local.items()})
        out.update({i: (v, "proxy") for i, v in cold.items()})
        m = self.metrics.lookups
        m.labels(self.name, "id").inc(len(out) - len(local) - len(cold))
        m.labels(self.name, "proxy_local").inc(len(local))
        m.labels(self.name, "proxy_redis").inc(len(cold))
        m.labels(self.name, "miss").inc(len(ids) - len(out))
        return out

    async def rank(self, user: np.ndarray, ids: list[str]) -> tuple[list[tuple[str, float, str]], list[str]]:
        """Distinct ``ids`` scored by inner product with ``user``, best first; and the unknown ones."""
        ids = list(dict.fromkeys(ids))
        found = await self.lookup(ids)
        known = [i for i in ids if i in found]
        scores = np.stack([found[i][0] for i in known]) @ user if known else np.zeros(0)
        order = np.argsort(-scores, kind="stable")
        ranked = [(known[j], sc, found[known[j]][1]) for j, sc in zip(order.tolist(), scores[order].tolist())]
        return ranked, [i for i in ids if i not in found]

    def top_k(self, user: np.ndarray, k: int) -> list[tuple[str, float, str]]:
        return [(i, s, "id" if i in self.warm else "proxy") for i, s in self.index.search(user, k)]

    async def put(self, key: str, emb: np.ndarray, modalities: list[str], overwrite: bool, extra: dict | None = None) -> bool:
        """Store in Redis (acknowledged write), then index on this replica (others hear of it through the
        store); False, and nothing written, when ``key`` exists and ``overwrite`` is off. Raises
        ``StoreUnavailable``."""
        with self.metrics.time_stage("store"):
            stored = await self.store.put(key, emb, modalities, overwrite, extra)
        if stored:
            with self.metrics.time_stage("index"):
                self.sync.add([key], emb[None])
        return stored
