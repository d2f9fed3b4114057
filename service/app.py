"""FastAPI app factory: the lifespan loads the model package, opens the store and builds the FAISS
index (``service.state``); one handler answers every ``ColdproxyError`` (``service.api.errors``); the routes live in
``service.api`` (health, model, items, ranking, bundles). OpenAPI docs at /docs.
"""

from __future__ import annotations

import gc
import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from coldproxy.config import ServiceSettings
from coldproxy.errors import ColdproxyError
from service.api import bundles, errors, health, items, model, ranking, users
from service.api.limits import BodyLimit
from service.metrics import RequestMetrics
from service.state import State

log = logging.getLogger("coldproxy")


async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
    # FastAPI's default echoes the input back, which fails to render for inf/NaN (a 500): keep the message only
    errors = [{k: e[k] for k in ("type", "loc", "msg") if k in e} for e in exc.errors()]
    return JSONResponse({"detail": errors}, status_code=422)


async def unhandled(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s", request.url.path)
    return JSONResponse({"detail": "internal error"}, status_code=500)


def create_app(settings: ServiceSettings | None = None) -> FastAPI:
    settings = settings or ServiceSettings()
    state = State(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await state.start()
        if settings.gc_freeze:
            # the loaded package, catalogs and libraries are long-lived objects; frozen, the
            # collector's full passes skip them instead of walking them all during requests
            gc.collect()
            gc.freeze()
        try:
            yield
        finally:
            await state.stop()

    app = FastAPI(
        title="coldproxy",
        version="1",
        lifespan=lifespan,
        description="Proxy embeddings for cold-start items, aligned to the recommender's ID space.",
    )
    app.state.coldproxy = state
    app.add_middleware(BodyLimit, settings=settings, dim=state.vector_dim)
    app.add_middleware(RequestMetrics, metrics=state.metrics)
    app.add_exception_handler(ColdproxyError, errors.answer)
    app.add_exception_handler(RequestValidationError, invalid_request)
    app.add_exception_handler(Exception, unhandled)
    for api in (health, model, items, ranking, bundles, users):
        app.include_router(api.router)
    return app
