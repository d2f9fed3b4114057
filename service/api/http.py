"""HTTP helpers shared by the routers: JSON in (one-pass pydantic parse, size-limited) and out
(orjson), and the read paths over a ``Catalog`` (fetch one, rank candidates, top-k) with their 4xx."""

from __future__ import annotations

import re

import numpy as np
import orjson
from fastapi import Request
from fastapi.responses import Response
from pydantic import ValidationError

from coldproxy.config import ServiceSettings
from coldproxy.errors import InvalidInput, NotFound, TooLarge
from service.api.limits import route_limits
from service.schemas import UserQuery
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


JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')


def check_values(raw: bytes, limit: int) -> None:
    """413 when the JSON ``raw`` holds more than ``limit`` values (commas outside strings, counted at C speed
    before anything is parsed: a comma inside a text only costs the second count)."""
    if raw.count(b",") >= limit and JSON_STRING.sub(b"", raw).count(b",") >= limit:
        raise TooLarge(f"request holds more than {limit} JSON values (list elements and fields): this route takes "
                       "no more (service/api/limits.py)")


async def read_json(request: Request, model):
    """The request body as ``model``, within the route's limits (``route_limits``: 413 past its bytes or its values).
    Parsed by pydantic's JSON parser in one pass: a ``body: Model`` parameter has FastAPI run ``json.loads`` and then
    validate the Python objects (bench/results/design_measurements.md)."""
    st = request.app.state.coldproxy
    limits = route_limits(request.scope["path"], st.settings, st.vector_dim())
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


async def rank_in(catalog: Catalog, query: UserQuery, ids: list[str], settings: ServiceSettings):
    """``ids`` ranked for the query's user (an ID of the package, or a checked vector)."""
    if len(ids) > settings.max_candidates:
        raise TooLarge(f"at most {settings.max_candidates} candidates per request")
    return await catalog.rank(catalog.query_vector(query.user_id, query.user_embedding, query.id_space), ids)


def top_k_in(catalog: Catalog, query: UserQuery, k: int, settings: ServiceSettings):
    """The ``k`` best entries for the query's user."""
    if k > settings.max_k:
        raise InvalidInput(f"k must be at most {settings.max_k}")
    return catalog.top_k(catalog.query_vector(query.user_id, query.user_embedding, query.id_space), k)
