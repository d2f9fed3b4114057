"""HTTP helpers shared by the routers: JSON in (one-pass pydantic parse, size-limited) and out (orjson). The read
paths themselves are ``service.reads``."""

from __future__ import annotations

import numpy as np
import orjson
from anyio import to_thread
from fastapi import Request
from fastapi.responses import Response
from pydantic import ValidationError

from coldproxy.errors import InvalidInput, TooLarge
from service.api.limits import SCOPE_KEY


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


def commas_outside_strings(raw: bytes, stop_at: int | None = None, chunk: int = 1 << 20) -> int:
    """The commas of ``raw`` outside JSON strings (counting stops past ``stop_at``), in vectorised passes over chunks
    of ``chunk`` bytes: linear, C speed, no per-string work (a regex scan cost a Python-level step per string and per
    escape: 70 ms for 1.4 MB of escaped quotes, issue 59), and memory bounded by the chunk, not the body (a 64 MB
    batch). A quote is a string's edge unless an odd run of backslashes precedes it; a comma is outside every string
    when an even number of edges precede it. Backslashes outside strings (invalid JSON) are the parser's to refuse."""
    total, inside, carry = 0, 0, 0  # inside: the chunk starts within a string; carry: backslashes ending the last one
    for start in range(0, len(raw), chunk):
        a = np.frombuffer(raw, np.uint8, count=min(chunk, len(raw) - start), offset=start)
        edges, backslash = np.flatnonzero(a == 34), a == 92  # " and \
        tail = carry
        if backslash.any():
            # each byte's last position at or before it that is not a backslash (-1: backslashes since the start)
            last = np.maximum.accumulate(np.where(backslash, np.int32(-1), np.arange(len(a), dtype=np.int32)))
            before = edges - 1
            at = last[np.maximum(before, 0)]
            run = np.where(before < 0, carry, np.where(at < 0, before + 1 + carry, before - at))
            edges = edges[run % 2 == 0]
            tail = len(a) - 1 - last[-1] + (carry if last[-1] < 0 else 0)
        elif len(edges) and edges[0] == 0 and carry % 2:
            edges = edges[1:]  # the chunk's first byte is a quote escaped by the last chunk's backslashes
        commas = np.flatnonzero(a == 44)  # ,
        total += int(np.count_nonzero((np.searchsorted(edges, commas) + inside) % 2 == 0))
        inside, carry = (inside + len(edges)) % 2, int(tail) if backslash.any() else 0
        if stop_at is not None and total >= stop_at:
            break
    return total


def check_values(raw: bytes, limit: int) -> None:
    """413 when the JSON ``raw`` holds ``limit`` values or more (commas outside strings), counted before anything is
    parsed: at C speed when the body holds fewer commas in all, else by ``commas_outside_strings`` (linear, vectorised),
    so a legitimate body with commas in its texts is taken and a hostile one costs milliseconds."""
    if raw.count(b",") < limit:
        return
    if commas_outside_strings(raw, stop_at=limit) >= limit:
        raise TooLarge(
            f"request holds more than {limit} JSON values (list elements and fields): this route takes "
            "no more (service/api/limits.py)"
        )


OFFLOAD_BODY = 256 * 1024  # a body this large is counted and parsed on a worker thread, not on the event loop


async def read_json(request: Request, model):
    """The request body as ``model``, within the route's limits (``route_limits``: 413 past its bytes or its values).
    Parsed by pydantic's JSON parser in one pass: a ``body: Model`` parameter has FastAPI run ``json.loads`` and then
    validate the Python objects (bench/results/design_measurements.md)."""
    limits = request.scope[SCOPE_KEY]  # set by ``BodyLimit`` for every request
    check_length(request, limits.bytes)
    raw = await request.body()

    def work():
        check_values(raw, limits.values)
        return parse_json(model, raw)

    if len(raw) < OFFLOAD_BODY:
        return work()
    return await to_thread.run_sync(work, limiter=request.app.state.coldproxy.heavy_reads)


def json_body(model) -> dict:
    """``openapi_extra`` of a route that reads its JSON body with ``read_json``, so /docs still shows it."""
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": model.model_json_schema()}}}}
