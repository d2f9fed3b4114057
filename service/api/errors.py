"""The one place domain errors become HTTP: the status of each ``coldproxy.errors`` kind, the handler that answers any
of them as ``{"detail": ...}`` (with ``Retry-After`` where the error says when to come back), and the per-item
results of the batch routes, which carry the status the item would have got alone."""

from __future__ import annotations

import logging

from fastapi import Request
from fastapi.responses import JSONResponse

from coldproxy.errors import (
    BadRequest,
    ColdproxyError,
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    RateLimited,
    TimedOut,
    TooLarge,
    Unauthorized,
    Unavailable,
    UnsupportedMediaType,
)
from coldproxy.protocol import BatchResult, IdVectorResult, IdVectorsOut, ItemOut

log = logging.getLogger("coldproxy")

STATUS: dict[type[ColdproxyError], int] = {
    BadRequest: 400,
    Unauthorized: 401,
    Forbidden: 403,
    NotFound: 404,
    TimedOut: 408,
    Conflict: 409,
    TooLarge: 413,
    UnsupportedMediaType: 415,
    InvalidInput: 422,
    RateLimited: 429,
    Unavailable: 503,
}


def status_of(exc: ColdproxyError) -> int:
    """The HTTP status of ``exc``'s kind: its nearest class with one (an ``ImageError`` is an ``InvalidInput``);
    500 for an internal error."""
    return next((STATUS[c] for c in type(exc).__mro__ if c in STATUS), 500)


def headers_of(exc: ColdproxyError) -> dict[str, str] | None:
    return {"Retry-After": exc.retry_after} if exc.retry_after is not None else None


async def answer(request: Request, exc: ColdproxyError) -> JSONResponse:
    """What the service answers for any ``ColdproxyError`` a route lets through."""
    status = status_of(exc)
    if status >= 500:  # the client gets the fixed detail; the reason (a Redis error...) goes to the log
        log.warning("%s on %s: %s", status, request.url.path, exc)
    return JSONResponse({"detail": exc.detail}, status_code=status, headers=headers_of(exc))


def batch_result(item_id: str, outcome: ItemOut | ColdproxyError) -> BatchResult:
    """One item of ``POST /v1/items:batch``: the item stored, or the status and detail it would have got alone."""
    if isinstance(outcome, ColdproxyError):
        return BatchResult(item_id=item_id, status=status_of(outcome), detail=outcome.detail)
    return BatchResult(item_id=item_id, status=200, item=outcome)


def id_vector_result(item_id: str, outcome: str | ColdproxyError) -> IdVectorResult:
    """One item of ``PUT /v1/items:id-embeddings``: what happened to its vector, or why it was refused."""
    if isinstance(outcome, ColdproxyError):
        return IdVectorResult(item_id=item_id, status=status_of(outcome), detail=outcome.detail)
    return IdVectorResult(item_id=item_id, status=200, outcome=outcome)


def id_vectors_out(
    version: str, fingerprint: str, item_ids: list[str], outcomes: list[str | ColdproxyError]
) -> IdVectorsOut:
    """``PUT /v1/items:id-embeddings``'s answer: each item's result, in order, and the counts."""
    results = [id_vector_result(i, r) for i, r in zip(item_ids, outcomes)]
    ok = [r for r in results if r.status == 200]
    unchanged = sum(r.outcome == "unchanged" for r in ok)
    return IdVectorsOut(
        package_version=version,
        id_fingerprint=fingerprint,
        stored=len(ok) - unchanged,
        unchanged=unchanged,
        failed=len(results) - len(ok),
        results=results,
    )
