"""One servable embedding space: its users, the entries the model knows (warm: by their ID vector, and the package's
own proxies of every other entry of its catalogue), and the entries computed at run time (cold) -- kept in Redis
under the model's version and mirrored in this replica's FAISS index. With local reads, a lookup asks Redis only for
a bounded number of the IDs the index does not hold (``COLDPROXY_MAX_STORE_LOOKUPS``): the rest of a list of unknown
IDs are answered missing without touching the store every replica shares. The service has one for items and, with a
bundle recommender, one for bundles; lookups, ranking and top-k are the same code for both.

Entries whose vector the recommender gave after the package was made (``PUT /v1/items:id-embeddings``)
are stored like new items, marked as the recommender's: a warm entry's new vector replaces the package's
on every replica (``update_warm``, from the sync), and every such entry is answered with source "id".
Rankings take the user as an ID of the package or as a vector (``query_vector``): checked like any input.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, replace

import numpy as np
from anyio import from_thread

from coldproxy.config import usable_cores
from coldproxy.errors import Conflict, NotFound
from coldproxy.id_space import check_client_vector
from coldproxy.ids import ID_RE
from service.metrics import Metrics
from service.storage.index import ItemIndex
from service.storage.records import StoredItem
from service.storage.store import RedisStore
from service.storage.sync import IndexSync

log = logging.getLogger("coldproxy.catalog")


@dataclass(frozen=True)
class Found:
    """Known entries of a lookup: ``pos`` (their positions in the IDs asked for), ``vectors`` (one row
    each, same order), ``warm`` (how many leading rows are warm, from the model; the rest are proxies) and
    ``given`` (rows after those whose vector the recommender gave since)."""

    pos: np.ndarray
    vectors: np.ndarray
    warm: int
    given: frozenset[int] = frozenset()

    proxied: frozenset[int] = frozenset()  # rows among the first ``warm`` that the package serves by a proxy

    def source(self, row: int) -> str:
        return "id" if (row < self.warm and row not in self.proxied) or row in self.given else "proxy"


def largest_norm(vectors: np.ndarray) -> float:
    return float(np.linalg.norm(vectors, axis=1).max()) if len(vectors) else 0.0


class Catalog:
    def __init__(
        self,
        name: str,
        user_ids: list[str],
        user_emb: np.ndarray,
        warm_ids: list[str],
        warm_emb: np.ndarray,
        store: RedisStore,
        metrics: Metrics,
        local_reads: bool,
        index_options: dict | None = None,
        space: str = "",
        score: str = "dot",
        max_user_norm: float | None = None,
        norm_slack: float = 1.5,
        store_lookups: int = 0,
        seen: tuple[np.ndarray, np.ndarray] | None = None,
        proxy_ids: list[str] = (),
        proxy_emb: np.ndarray | None = None,
    ):
        """``proxy_ids``, ``proxy_emb``: the package's entries without an ID vector, served by their proxy (answered
        with source "proxy", among the "new" ones of ``top_k``), after the warm ones; ``space``: the ID space's
        fingerprint; ``score``: its score function (cosine: vectors unit-length);
        ``max_user_norm``: the largest norm of a user vector a client may send (default: ``norm_slack`` x the
        largest of the users', or of the warm entries' without users); ``norm_slack`` bounds a vector the
        recommender sends for an entry likewise; ``store_lookups``: with ``local_reads``, how many IDs a lookup
        that this replica's index does not hold may ask Redis for (0: all); ``seen``: each user's training
        interactions as rows of the package's entries (CSR indptr, rows), left out of their recommendations."""
        self.name, self.store, self.metrics, self.local_reads = name, store, metrics, local_reads
        self.store_lookups, self.seen = store_lookups, seen
        self.users = {u: i for i, u in enumerate(user_ids)}
        self.user_emb = user_emb
        self.n_id = len(warm_ids)  # the package's entries with an ID vector: the first rows
        self.proxies = set(proxy_ids)  # the package's entries served by a proxy, until the recommender gives a vector
        self.warm = {x: i for i, x in enumerate([*warm_ids, *proxy_ids])}
        self.warm_emb = warm_emb if not len(proxy_ids) else np.concatenate([warm_emb, proxy_emb]).astype(np.float32)
        self.dim, self.space, self.score = warm_emb.shape[1], space, score
        self.max_user_norm = max_user_norm or norm_slack * (largest_norm(user_emb) or largest_norm(warm_emb) or 1.0)
        self.max_entry_norm = largest_norm(warm_emb) or 1.0  # an item's vector never outreaches the package's
        if score == "cosine":  # every vector is made unit-length: its norm says nothing (it must be finite)
            self.max_user_norm = self.max_entry_norm = float("inf")
        self.given: set[str] = set()  # entries whose vector the recommender gave (not the package's warm ones)
        self.hidden: set[str] = set()  # warm entries taken down (the store's hidden set, as this replica last read it)
        self.history = None  # a ``service.storage.history.UserHistory``: items users were posted to have seen since
        self._warm_owned = False  # warm_emb is the package's array until a warm entry gets a new vector
        self.index = ItemIndex(warm_emb.shape[1], **(index_options or {}))
        self.index.upsert(list(self.warm), self.warm_emb, posted=0.0)  # no posting time: never "posted after" one
        self.sync = IndexSync(store, self.index, metrics, self.warm, name, self)

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
        return len(self.index) - len(self.warm) + len(self.hidden)

    def user_vector(self, user_id: str) -> np.ndarray | None:
        row = self.users.get(user_id)
        return None if row is None else self.user_emb[row]

    def query_vector(
        self, user_id: str | None, user_embedding: list[float] | None, space: str | None = None
    ) -> np.ndarray:
        """The vector a ranking is for: the package's user ``user_id`` (404 when unknown), or ``user_embedding``
        checked (422: dimension, finiteness, norm; unit length in a cosine space). ``space``, when a client names
        the space its vector is of, must be this one's (409)."""
        if space is not None and space != self.space:
            raise Conflict(
                f"the vector is of ID space {space}; this {self.name} package serves {self.space} "
                "(GET /v1/model): never rank one space's user against another's entries"
            )
        if user_embedding is None:
            vector = self.user_vector(user_id)
            if vector is None:
                raise NotFound(f"unknown user {user_id}")
            return vector
        return check_client_vector(
            user_embedding, self.dim, self.max_user_norm, "user_embedding", unit=self.score == "cosine"
        )

    def entry_vector(self, values: list[float], field: str, max_norm: float | None = None) -> np.ndarray:
        """A vector a client sends for an entry, checked (422: dimension, finiteness, a norm within ``max_norm``,
        default the largest warm entry's) and in this space's form: unit-length in a cosine space, where its norm is
        not bounded."""
        bound = self.max_entry_norm if max_norm is None or self.score == "cosine" else max_norm
        return check_client_vector(values, self.dim, bound, field, unit=self.score == "cosine")

    def update_warm(self, ids: list[str], vectors: np.ndarray) -> None:
        """New vectors for warm entries (the recommender's, from the store): served and indexed from now on. The
        package's array is copied the first time, so the package itself stays as loaded."""
        if not self._warm_owned:
            self.warm_emb, self._warm_owned = self.warm_emb.copy(), True
        self.warm_emb[[self.warm[i] for i in ids]] = vectors
        self.proxies.difference_update(ids)  # the package's proxy of such an entry gives way to the recommender's
        shown = [k for k, i in enumerate(ids) if i not in self.hidden]  # a hidden one stays out of the index
        self.index.upsert([ids[k] for k in shown], vectors[shown])

    def show(self, ids: list[str], hidden: list[bool]) -> None:
        """Apply the take-downs of warm entries ``ids``: out of the index and lookups where ``hidden``, back where
        not."""
        down = [i for i, h in zip(ids, hidden) if h and i not in self.hidden]
        back = [i for i, h in zip(ids, hidden) if not h and i in self.hidden]
        self.index.remove(down)
        self.hidden.update(down)
        if back:
            self.hidden.difference_update(back)
            self.index.upsert(back, self.warm_emb[[self.warm[i] for i in back]], posted=0.0)

    async def delete(self, key: str) -> bool:
        """Take ``key`` down on every replica: a cold entry's stored vector (and kept features) are removed, a warm
        one is hidden (the package cannot change; ``restore`` shows it again). False when there was nothing to
        take down. Raises ``StoreUnavailable``."""
        if key in self.warm:
            changed = await self.store.set_hidden(key, True)
            self.show([key], [True])
            return changed
        removed = await self.store.delete(key)
        self.sync.drop([key])
        return removed

    async def restore(self, key: str) -> bool:
        """Show a hidden warm entry again on every replica; False when it was not hidden. Raises ``NotFound`` for
        an ID that is not one of the package's (a deleted new entry has no vector left: POST it again)."""
        if key not in self.warm:
            raise NotFound(
                f"{key} is not one of the model package's {self.name}: only those can be restored "
                "(post a deleted new one again)"
            )
        changed = await self.store.set_hidden(key, False)
        self.show([key], [False])
        return changed

    async def gather(self, ids: list[str]) -> Found:
        """The known ones among ``ids``: warm from the model; cold from this replica's index when it holds
        them (``local_reads``), else from Redis (written by another replica an instant ago). Rows are
        gathered with one fancy index per source, not one array per ID. Raises ``StoreUnavailable``."""
        held = self._held(ids)
        return self._found(ids, held, await self.store.get_many_sourced([ids[k] for k in held[-1]]))

    def gather_blocking(self, ids: list[str]) -> Found:
        """``gather`` from a worker thread (``anyio.to_thread``): the work on the IDs here, the Redis lookup on the
        event loop."""
        held = self._held(ids)
        return self._found(ids, held, from_thread.run(self.store.get_many_sourced, [ids[k] for k in held[-1]]))

    def _held(self, ids: list[str]) -> tuple[list[int], list[int], list[int], np.ndarray, list[int]]:
        """Where ``ids`` are held in memory: (positions and rows of the warm ones, positions and vectors of those this
        replica's index holds, positions of the valid rest, to look up in Redis)."""
        warm_pos, warm_rows, rest = [], [], []
        get, hidden = self.warm.get, self.hidden
        for k, i in enumerate(ids):
            r = get(i)
            if r is None:
                rest.append(k)
            elif not (hidden and i in hidden):  # a hidden one is unknown (and not looked for in the store)
                warm_pos.append(k)
                warm_rows.append(r)
        rest = [k for k in rest if ID_RE.fullmatch(ids[k])]
        local_pos, local_vecs = [], np.zeros((0, self.dim), np.float32)
        if rest and self.local_reads:
            hit, local_vecs = self.index.vectors([ids[k] for k in rest])
            local_pos, found = [rest[j] for j in hit], set(hit)
            rest = [k for j, k in enumerate(rest) if j not in found]
            if self.store_lookups:  # Redis only covers the instant before another replica's write reaches this one:
                rest = rest[: self.store_lookups]  # a list of unknown IDs must not become a scan of Redis
        return warm_pos, warm_rows, local_pos, local_vecs, rest

    def _found(self, ids: list[str], held: tuple, cold: dict[str, tuple[np.ndarray, bool]]) -> Found:
        warm_pos, warm_rows, local_pos, local_vecs, rest = held
        pos, parts = [warm_pos, local_pos], [self.warm_emb[warm_rows], local_vecs]
        if cold:
            pos.append([k for k in rest if ids[k] in cold])
            parts.append(np.stack([cold[ids[k]][0] for k in pos[-1]]))
        flat = [k for p in pos for k in p]
        given = frozenset()
        if self.given or any(v[1] for v in cold.values()):
            given = frozenset(
                r
                for r in range(len(warm_pos), len(flat))
                if ids[flat[r]] in self.given or (ids[flat[r]] in cold and cold[ids[flat[r]]][1])
            )
        proxied = (
            frozenset(r for r, k in enumerate(warm_pos) if ids[k] in self.proxies) if self.proxies else frozenset()
        )
        found = Found(np.array(flat, np.int64), np.concatenate(parts), len(warm_pos), given, proxied)
        m = self.metrics.lookups
        m.labels(self.name, "id").inc(found.warm)
        m.labels(self.name, "proxy_local").inc(len(local_pos))
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
        return self._ranked(ids, await self.gather(ids), user)

    def rank_blocking(self, user: np.ndarray, ids: list[str]) -> tuple[list[tuple[str, float, str]], list[str]]:
        """``rank`` from a worker thread (a long candidate list: its work off the event loop)."""
        ids = list(dict.fromkeys(ids))
        return self._ranked(ids, self.gather_blocking(ids), user)

    @staticmethod
    def _ranked(ids: list[str], f: Found, user: np.ndarray) -> tuple[list[tuple[str, float, str]], list[str]]:
        scores = f.vectors @ user
        order = np.lexsort((f.pos, -scores))
        ranked = [
            (ids[k], sc, f.source(j)) for j, k, sc in zip(order.tolist(), f.pos[order].tolist(), scores[order].tolist())
        ]
        unknown = np.ones(len(ids), bool)
        unknown[f.pos] = False
        return ranked, [ids[k] for k in np.flatnonzero(unknown).tolist()]

    def seen_rows(self, user_id: str | None) -> frozenset[int]:
        """The index rows of ``user_id``'s interactions in the package's data (the package's entries are the index's
        first rows); none for a user vector, or a package that kept none."""
        row = self.users.get(user_id) if user_id is not None else None
        if row is None or self.seen is None:
            return frozenset()
        indptr, rows = self.seen
        return frozenset(rows[indptr[row] : indptr[row + 1]].tolist())

    async def seen_since(self, user_id: str | None) -> frozenset[int]:
        """The index rows of the items ``user_id`` was posted to have seen since the package (``history``); none for a
        user vector, or without a history. Raises ``StoreUnavailable``."""
        if user_id is None or self.history is None:
            return frozenset()
        return self.rows_of(await self.history.items(user_id))

    def rows_of(self, ids: list[str]) -> frozenset[int]:
        """The index rows of those of ``ids`` it holds."""
        return frozenset(self.index.row_numbers(ids))

    def top_k(
        self,
        user: np.ndarray,
        k: int,
        exclude: frozenset[int] = frozenset(),
        only: str = "all",
        after: float | None = None,
    ) -> list[tuple[str, float, str]]:
        """The ``k`` best entries for ``user`` without the rows in ``exclude``; ``only``: "warm" (the package's entries
        with an ID vector, the index's first rows), "new" (every other: the package's proxies, and entries posted or
        added since) or "all"; ``after``: only entries first stored after that time (epoch seconds; never the
        package's own)."""
        within = {"all": None, "warm": (0, self.n_id), "new": (self.n_id, 2**62)}[only]
        return [(i, s, self.source_of(i)) for i, s in self.index.search(user, k, exclude, within, after)]

    def source_of(self, entry_id: str) -> str:
        """ "id" for an entry served by an ID vector (the package's, or the recommender's since), else "proxy"."""
        return "id" if (entry_id in self.warm and entry_id not in self.proxies) or entry_id in self.given else "proxy"

    async def give(self, key: str, vector: np.ndarray) -> tuple[str, StoredItem | None]:
        """Serve the recommender's ``vector`` (``entry_vector``'s, or one this space stored) for ``key`` from now on:
        a warm entry's replaces the package's; a stored new entry graduates, keeping its experts' outputs for the
        warm-up path; an unknown one is added. Returns (outcome: updated | added | graduated | unchanged, the record
        it replaced). Raises ``StoreUnavailable``."""
        given = {"src": "id"}
        if key in self.warm:
            if np.array_equal(self.warm_emb[self.warm[key]], vector):
                return "unchanged", None
            record, outcome, previous = StoredItem(vector, [], fields=given), "updated", None
        else:
            previous = await self.store.get_record(key)
            if previous is None:
                record, outcome = StoredItem(vector, [], fields=given), "added"
            elif previous.fields.get("src") == "id":
                if np.array_equal(previous.embedding, vector):
                    return "unchanged", previous
                record = replace(
                    previous, embedding=vector, id_embedding=vector if previous.id_embedding is not None else None
                )
                outcome = "updated"
            else:
                record = replace(previous, embedding=vector, id_embedding=vector, fields=previous.fields | given)
                outcome = "graduated"
        await self.put(key, record, True)
        return outcome, previous

    async def given_entries(self, chunk: int = 10_000) -> dict[str, np.ndarray]:
        """Every stored entry whose vector the recommender gave, and that vector. Raises ``StoreUnavailable``."""
        ids, out = await self.store.all_ids(), {}
        for start in range(0, len(ids), chunk):
            out |= {
                i: e.vector
                for i, e in (await self.store.get_many_sourced(ids[start : start + chunk])).items()
                if e.given
            }
        return out

    async def put(
        self,
        key: str,
        record: StoredItem,
        overwrite: bool,
        features: np.ndarray | None = None,
        expect: StoredItem | None = None,
    ) -> bool:
        """Store in Redis (acknowledged write; with the item's content features when given), then index on this
        replica (others hear of it through the store); False, and nothing written, when ``key`` exists and
        ``overwrite`` is off, or it is no longer the record ``expect`` (see ``RedisStore.put``). Raises
        ``StoreUnavailable``."""
        with self.metrics.time_stage("store"):
            stored = await self.store.put(key, record, overwrite, features, expect)
        if stored:
            with self.metrics.time_stage("index"):
                posted = record.fields.get("posted_at")  # a re-embedded item's first-stored time; else now, if new
                self.sync.add(
                    [key],
                    record.embedding[None],
                    [record.fields.get("src") == "id"],
                    None if posted is None else np.array([float(posted)]),
                )
        return stored
