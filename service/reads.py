"""The read paths, below the routes, items and bundles alike: one entry's vector (``fetch``), candidates ranked for a
user (``rank``), and the top k with the filters and the user's seen items left out (``top_k``). Long work runs on a
worker thread, at most ``State.heavy_reads`` at once, so the event loop -- and the probes -- never wait on it.
Failures are ``ColdproxyError``s."""

from __future__ import annotations

import numpy as np
from anyio import to_thread

from coldproxy.errors import InvalidInput, NotFound, TooLarge
from coldproxy.protocol import RecommendFilters, UserQuery
from service.storage.catalog import Catalog


async def fetch(catalog: Catalog, key: str, what: str) -> tuple[np.ndarray, str]:
    """One entry's (vector, source); 404 when unknown, 503 when the store is down."""
    found = await catalog.lookup([key])
    if key not in found:
        raise NotFound(f"unknown {what} {key}")
    return found[key]


OFFLOAD_ROWS = 20_000  # a top-k over an index this large runs on a worker thread (a flat scan: ~1 ms per 20,000 rows)
OFFLOAD_AT = 1000  # candidates: a longer list is ranked on a worker thread (10,000 held the event loop ~15 ms here)


async def rank(st, catalog: Catalog, query: UserQuery, ids: list[str], row) -> tuple[list, list[str]]:
    """``ids`` ranked for the query's user (an ID of the package, or a checked vector): ``row(id, score, source)`` of
    each known one, best first, and the unknown ones. A long list is ranked, and its rows built, on a worker thread
    (at most ``State.heavy_reads`` at once), so other requests -- probes included -- are not kept waiting behind it."""
    if len(ids) > st.settings.max_candidates:
        raise TooLarge(f"at most {st.settings.max_candidates} candidates per request")
    user = catalog.query_vector(query.user_id, query.user_embedding, query.id_space)
    if len(ids) <= OFFLOAD_AT:
        ranked, missing = await catalog.rank(user, ids)
        return [row(*r) for r in ranked], missing

    def work():
        ranked, missing = catalog.rank_blocking(user, ids)
        return [row(*r) for r in ranked], missing

    return await to_thread.run_sync(work, limiter=st.heavy_reads)


async def top_k(st, catalog: Catalog, query: UserQuery, k: int, filters: RecommendFilters, exclude_ids: list[str] = ()):
    """The ``k`` best entries for the query's user that pass ``filters`` (with ``exclude_seen``, none of the user's
    interactions in the package's data nor of the items posted as seen by them since; ``only`` warm, new or all entries;
    ``created_after``) and none of ``exclude_ids`` (``Catalog.top_k``)."""
    if k > st.settings.max_k:
        raise InvalidInput(f"k must be at most {st.settings.max_k}")
    user = catalog.query_vector(query.user_id, query.user_embedding, query.id_space)
    exclude = frozenset()
    if filters.exclude_seen:
        exclude = catalog.seen_rows(query.user_id) | await catalog.seen_since(query.user_id)
    if exclude_ids:
        exclude = exclude | catalog.rows_of(list(exclude_ids))
    if filters.only == "all" and filters.after is None and len(catalog.index) < OFFLOAD_ROWS:
        return catalog.top_k(user, k, exclude, filters.only, filters.after)
    # an exact scan (a filter: a selector over the flat index) or a large index: on a worker thread, as a long
    # ranking is, so the event loop -- and the probes -- never wait on it
    return await to_thread.run_sync(
        catalog.top_k, user, k, exclude, filters.only, filters.after, limiter=st.heavy_reads
    )
