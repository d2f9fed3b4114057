"""Probes and metrics: /healthz (alive, batch workers running), /readyz (a model package loaded; degraded
without Redis), /metrics."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from coldproxy.protocol import versions
from service import bundle_wait
from service.api.deps import AppState

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
    """Ready once a model package is loaded. Without Redis the pod stays in the Service, degraded:
    warm items are read from the package and every replica shares the one Redis, so taking them all
    out would only turn those reads into errors too."""
    sv = st.serving
    if sv is None:
        return JSONResponse({"status": "loading"}, status_code=503)
    if not await sv.items.store.ping():
        return {
            "status": "degraded",
            **versions(sv.version),
            "detail": "store unavailable: warm items are served; writes and new items' reads answer 503",
        }
    wait = bundle_wait.waiting(st) if sv.bundles is None else None
    if wait is not None:  # items are served; the bundle routes answer 503 until the package is loaded
        return {"status": "ready", **versions(sv.version), "detail": wait[0]}
    return {"status": "ready", **versions(sv.version)}


@router.get("/metrics")
async def metrics(st: AppState):
    return PlainTextResponse(generate_latest(st.metrics.registry), media_type=CONTENT_TYPE_LATEST)
