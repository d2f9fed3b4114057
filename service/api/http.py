"""HTTP helpers shared by the routers: JSON in (one-pass pydantic parse, size-limited) and out
(orjson), and the read paths over a ``Catalog`` (fetch one, rank candidates, top-k) with their 4xx."""

from __future__ import annotations

import re

import numpy as np
import orjson
from anyio import to_thread
from fastapi import Request
from fastapi.responses import Response
from pydantic import ValidationError

from coldproxy.errors import InvalidInput, NotFound, TooLarge
from coldproxy.protocol import RecommendFilters, UserQuery
from service.api.limits import SCOPE_KEY
from service.storage.catalog import Catalog


def fast_json(payload: dict) -> Response:
    """Hot read paths: the payload already has the route's ``response_model`` shape (kept for the OpenAPI
    schema); orjson writes it directly instead of FastAPI re-validating and encoding every field
    (bench/results/design_measurements.md)."""
    return Response(orjson.dumps(payload), media_type="application/json")


def parse_json(model, raw: bytes):
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        raise InvalidInput(exc.errors(include_url=False, include_context=False, include_input=False)) from exc


def check_length(request: Request, limit: int) -> None:
    """413 when the declared body is larger than ``limit`` bytes."""
    if int(request.headers.get("content-length") or 0) > limit:
        raise TooLarge(f"request larger than {limit} bytes")


# A JSON string, or an unterminated one up to the end of the body: every match attempt that starts at a quote succeeds
# without backtracking (DOTALL: an escape takes any byte), so a scan is linear in the body. Without the unterminated
# branch, a body ending in ``"`` + ``\\"`` x n failed one attempt per quote, each to the end: quadratic (issue 59).
JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*(?:"|\\?\Z)', re.DOTALL)


def check_values(raw: bytes, limit: int) -> None:
    """413 when the JSON ``raw`` holds ``limit`` values or more (commas outside strings), counted before anything is
    parsed, in one linear pass: at C speed when the body holds fewer commas in all; else string by string, stopping as
    soon as the count is reached, so a hostile body costs O(limit) and a legitimate one with commas in its texts one
    regex scan. Malformed JSON is left to the parser, which stops at its first bad token."""
    if raw.count(b",") < limit:
        return
    seen, pos = 0, 0
    for string in JSON_STRING.finditer(raw):
        seen += raw.count(b",", pos, string.start())
        if seen >= limit:
            break
        pos = string.end()
    else:
        seen += raw.count(b",", pos)
    if seen >= limit:
        raise TooLarge(f"request holds more than {limit} JSON values (list elements and fields): this route takes "
                       "no more (service/api/limits.py)")


async def read_json(request: Request, model):
    """The request body as ``model``, within the route's limits (``route_limits``: 413 past its bytes or its values).
    Parsed by pydantic's JSON parser in one pass: a ``body: Model`` parameter has FastAPI run ``json.loads`` and then
    validate the Python objects (bench/results/design_measurements.md)."""
    limits = request.scope[SCOPE_KEY]  # set by ``BodyLimit`` for every request
    check_length(request, limits.bytes)
    raw = await request.body()
    check_values(raw, limits.values)
    return parse_json(model, raw)


def json_body(model) -> dict:
    """``openapi_extra`` of a route that reads its JSON body with ``read_json``, so /docs still shows it."""
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": model.model_json_schema()}}}}


async def fetch(catalog: Catalog, key: str, what: str) -> tuple[np.ndarray, str]:
    """One entry's (vector, source); 404 when unknown, 503 when the store is down."""
    found = await catalog.lookup([key])
    if key not in found:
        raise NotFound(f"unknown {what} {key}")
    return found[key]


OFFLOAD_ROWS = 20_000  # a top-k over an index this large runs on a worker thread (a flat scan: ~1 ms per 20,000 rows)
OFFLOAD_AT = 1000  # candidates: a longer list is ranked on a worker thread (10,000 held the event loop ~15 ms here)


async def rank_in(st, catalog: Catalog, query: UserQuery, ids: list[str], row) -> tuple[list, list[str]]:
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


async def top_k_in(st, catalog: Catalog, query: UserQuery, k: int, filters: RecommendFilters,
                   exclude_ids: list[str] = ()):
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
    return await to_thread.run_sync(catalog.top_k, user, k, exclude, filters.only, filters.after,
                                    limiter=st.heavy_reads)
