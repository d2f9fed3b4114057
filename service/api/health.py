"""Probes and metrics: /healthz (alive), /readyz (a model package loaded and Redis answering), /metrics."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from service.state import AppState

router = APIRouter()


@router.get("/healthz")
async def healthz(st: AppState):
    """Alive, unless a batch worker died: then the pod should be restarted (liveness fails)."""
    batcher = st.serving.batcher if st.serving is not None else None
    if batcher is not None and not batcher.healthy:
        return JSONResponse({"status": "batch workers down", "detail": batcher.dead}, status_code=503)
    return {"status": "alive"}


@router.get("/readyz")
async def readyz(st: AppState):
    sv = st.serving
    if sv is None:
        return JSONResponse({"status": "loading"}, status_code=503)
    if not await sv.items.store.ping():
        return JSONResponse({"status": "store unavailable"}, status_code=503)
    return {"status": "ready", "bundle_version": sv.version}


@router.get("/metrics")
async def metrics(st: AppState):
    return PlainTextResponse(generate_latest(st.metrics.registry), media_type=CONTENT_TYPE_LATEST)
