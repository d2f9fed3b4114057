"""FastAPI app factory: lifespan loads the bundle, opens the store, builds the FAISS index
(``service.state``), and the item routes.

Endpoints (v1): POST /v1/items, POST /v1/items:batch, GET /v1/items/{id}/embedding, POST /v1/rank,
GET /v1/users/{id}/recommendations, GET /v1/model, POST /v1/admin/reload, /healthz, /readyz,
/metrics; the bundle routes (POST /v1/bundles, ...) are in ``service.bundle_routes``. Docs at /docs.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import gc
import logging
from contextlib import asynccontextmanager
from typing import Annotated

import numpy as np
from anyio import to_thread
from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from coldproxy.bundle import BundleError
from coldproxy.config import ServiceSettings
from coldproxy.preprocess import ImageError
from service.batcher import QueueFull
from service.bundle_routes import router as bundle_router
from service.http import check_item_id, fast_json, fetch, json_body, parse_json, rank_in, read_json, top_k_in, unavailable
from service.metrics import RequestMetrics
from service.schemas import (ITEM_ID_PATTERN, BatchOut, BatchResult, EmbeddingOut, InteractionsIn, ItemJSON, ItemOut,
                             ItemsBatchIn, ModelOut, RankIn, RankOut, RecommendOut, ReloadOut)
from service.state import AppState, Live, Serving, State, access
from service.store import StoreUnavailable

log = logging.getLogger("coldproxy")


async def _read_item(request: Request, s: ServiceSettings) -> tuple[str, str | None, bytes | None, bool]:
    """Parse multipart (item_id, text, image file, overwrite) or JSON (image as base64)."""
    ctype = request.headers.get("content-type", "")
    if int(request.headers.get("content-length") or 0) > s.max_request_bytes:
        raise HTTPException(413, f"request larger than {s.max_request_bytes} bytes")
    if ctype.startswith(("multipart/form-data", "application/x-www-form-urlencoded")):
        try:
            form = await request.form(max_files=1, max_fields=10, max_part_size=s.max_request_bytes)
        except HTTPException:
            raise
        except Exception as exc:
            raise HTTPException(400, f"malformed multipart body: {exc}") from exc
        item_id = form.get("item_id")
        if not isinstance(item_id, str):
            raise HTTPException(422, "form field item_id is required")
        text = form.get("text")
        if text is not None and not isinstance(text, str):
            raise HTTPException(422, "form field text must be a string")
        upload = form.get("image")
        image = None
        if upload is not None:
            if isinstance(upload, str):
                raise HTTPException(422, "form field image must be a file")
            image = await upload.read()
        overwrite = str(form.get("overwrite", "false")).lower() in ("1", "true", "yes")
    elif ctype.startswith("application/json"):
        body = parse_json(ItemJSON, await request.body())
        return _check_json_item(body, s)
    else:
        raise HTTPException(415, "send multipart/form-data (or a url-encoded form without image) or application/json")
    return _check_item(item_id, text, image, overwrite, s)


def _check_json_item(body: ItemJSON, s: ServiceSettings) -> tuple[str, str | None, bytes | None, bool]:
    try:
        image = base64.b64decode(body.image_base64, validate=True) if body.image_base64 else None
    except (binascii.Error, ValueError) as exc:
        raise HTTPException(422, f"image_base64 is not valid base64: {exc}") from exc
    return _check_item(body.item_id, body.text, image, body.overwrite, s)


def _check_item(item_id: str, text: str | None, image: bytes | None, overwrite: bool,
                s: ServiceSettings) -> tuple[str, str | None, bytes | None, bool]:
    """The checks every ingested item passes, whatever its transport; HTTPException on the first failure."""
    check_item_id(item_id)
    if text is not None:
        text = text.strip() or None
        if text and len(text) > s.max_text_chars:
            raise HTTPException(413, f"text longer than {s.max_text_chars} characters")
    if image is not None and len(image) == 0:
        image = None
    if image is not None and len(image) > s.max_request_bytes:
        raise HTTPException(413, f"image larger than {s.max_request_bytes} bytes")
    if text is None and image is None:
        raise HTTPException(422, "an item needs text, an image, or both")
    return item_id, text, image, overwrite


ITEM_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {"schema": {"type": "object", "required": ["item_id"], "properties": {
                "item_id": {"type": "string", "pattern": ITEM_ID_PATTERN}, "text": {"type": "string"},
                "image": {"type": "string", "format": "binary"}, "overwrite": {"type": "boolean"}}}},
            "application/json": {"schema": ItemJSON.model_json_schema()},
        },
    }
}


def create_app(settings: ServiceSettings | None = None) -> FastAPI:
    settings = settings or ServiceSettings()
    state = State(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await state.start()
        if settings.gc_freeze:
            # the loaded bundle, catalogs and libraries are long-lived objects; frozen, the
            # collector's full passes skip them instead of walking them all during requests
            gc.collect()
            gc.freeze()
        try:
            yield
        finally:
            await state.stop()

    app = FastAPI(title="coldproxy", version="1", lifespan=lifespan,
                  description="Proxy embeddings for cold-start items, aligned to the recommender's ID space.")
    app.state.coldproxy = state

    app.add_middleware(RequestMetrics, metrics=state.metrics)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        # FastAPI's default echoes the input back, which fails to render for inf/NaN (a 500): keep the message only
        errors = [{k: e[k] for k in ("type", "loc", "msg") if k in e} for e in exc.errors()]
        return JSONResponse({"detail": errors}, status_code=422)

    @app.exception_handler(Exception)
    async def unhandled(request: Request, exc: Exception):
        log.exception("unhandled error on %s", request.url.path)
        return JSONResponse({"detail": "internal error"}, status_code=500)

    @app.get("/healthz")
    async def healthz() -> dict:
        return {"status": "alive"}

    @app.get("/readyz")
    async def readyz(st: AppState):
        sv = st.serving
        if sv is None:
            return JSONResponse({"status": "loading"}, status_code=503)
        if not await sv.items.store.ping():
            return JSONResponse({"status": "store unavailable"}, status_code=503)
        return {"status": "ready", "bundle_version": sv.version}

    @app.get("/metrics")
    async def metrics(st: AppState):
        return PlainTextResponse(generate_latest(st.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/model", response_model=ModelOut, dependencies=[access(write=False)])
    async def model(sv: Live) -> ModelOut:
        m = sv.bundle.manifest
        recs = None
        if sv.bundles is not None:
            bm = sv.bundles.rec.manifest
            recs = {"version": bm.version, "created_at": bm.created_at, "scenario": bm.scenario, "dim": 2 * bm.dim,
                    "counts": bm.counts, "cold_bundles_indexed": sv.bundles.catalog.cold_indexed,
                    "test_metrics": bm.metrics.get("test", {})}
        return ModelOut(bundle_version=m.version, created_at=m.created_at, dims=m.dims.model_dump(), encoders=m.encoders,
                        counts=m.counts, cold_items_indexed=sv.items.cold_indexed,
                        providers=sv.pipeline.providers, test_metrics=m.metrics.get("test", {}), bundle_recommender=recs)

    @app.post("/v1/admin/reload", response_model=ReloadOut, dependencies=[access(write=True)])
    async def reload(st: AppState) -> ReloadOut:
        """Load the bundle directory again and switch to it once it is ready; the old one serves until then."""
        current = st.serving.version if st.serving else None
        try:
            previous, version = await st.reload()
        except BundleError as exc:
            raise HTTPException(422, f"bundle refused, still serving {current}: {exc}") from exc
        except StoreUnavailable as exc:
            raise unavailable(exc) from exc
        return ReloadOut(previous_version=previous, bundle_version=version, changed=previous != version)

    async def store_item(st: State, sv: Serving, item_id: str, overwrite: bool, result) -> ItemOut:
        """Embedding result -> Redis -> FAISS; HTTPException (409, 422, 503) when it cannot be stored."""
        if isinstance(result, ImageError):
            raise HTTPException(422, str(result))
        emb = result.embedding
        if not np.isfinite(emb).all():
            raise HTTPException(422, "the model produced a non-finite embedding for this input; nothing was stored")
        extra = result.parts and result.parts | {
            "interactions": 0, "fusion_weights": ",".join(f"{float(a):.9g}" for a in result.fusion_weights)}
        try:
            stored = await sv.items.put(item_id, emb, result.modalities, overwrite, extra)
        except StoreUnavailable as exc:
            raise unavailable(exc) from exc
        if not stored:
            raise HTTPException(409, f"item {item_id} already exists for bundle {sv.version}; send overwrite=true to replace it")
        return item_out(sv, item_id, emb, result.modalities, result.fusion_weights, result.expert_weights)

    def item_out(sv: Serving, item_id, emb, modalities, alpha, experts, interactions=None) -> ItemOut:
        return ItemOut(item_id=item_id, bundle_version=sv.version, source="proxy", modalities=modalities,
                       fusion_weights={"text": float(alpha[0]), "image": float(alpha[1])},
                       expert_weights=None if experts is None else dict(zip(sv.bundle.manifest.experts["experts"], map(float, experts))),
                       interactions=interactions, embedding=emb.tolist())

    def refuse_warm(sv: Serving, item_id: str) -> None:
        if item_id in sv.items.warm:
            raise HTTPException(409, f"item {item_id} is warm: it is served from the ID model")

    @app.post("/v1/items", response_model=ItemOut, openapi_extra=ITEM_BODY, dependencies=[access(write=True)])
    async def post_item(request: Request, st: AppState, sv: Live) -> ItemOut:
        item_id, text, image, overwrite = await _read_item(request, st.settings)
        refuse_warm(sv, item_id)
        prepared = await to_thread.run_sync(sv.pipeline.prepare, text, image)  # decode in a thread, in parallel
        if sv.batcher is None:
            result = (await sv.graphs.run(sv.pipeline.infer, [prepared]))[0]
        else:
            try:
                result = await sv.batcher.submit(prepared)
            except QueueFull as exc:
                raise HTTPException(503, f"overloaded: {exc}", headers={"Retry-After": "1"}) from exc
        return await store_item(st, sv, item_id, overwrite, result)

    @app.post("/v1/items/{item_id}/interactions", response_model=ItemOut, openapi_extra=json_body(InteractionsIn),
              dependencies=[access(write=True)])
    async def post_interactions(item_id: str, request: Request, st: AppState, sv: Live) -> ItemOut:
        """Warm-up path: tell the service how many interactions a new item has had (and, optionally, the
        ID embedding your recommender has learnt for it so far); the cold-aware gate re-mixes the
        experts and the served embedding moves from content towards the ID embedding as the gate says.
        Once retraining makes the item warm, the new bundle serves it from the ID model."""
        check_item_id(item_id)
        refuse_warm(sv, item_id)
        if not sv.bundle.has_experts:
            raise HTTPException(409, f"bundle {sv.version} has no cold-aware gate; interaction counts do not change its proxies")
        body = await read_json(request, InteractionsIn, st.settings.max_request_bytes)
        d = sv.bundle.manifest.dims.id_dim
        id_emb = None
        if body.id_embedding is not None:
            id_emb = np.asarray(body.id_embedding, dtype=np.float32)
            if id_emb.shape != (d,) or not np.isfinite(id_emb).all():
                raise HTTPException(422, f"id_embedding must be {d} finite numbers")
        try:
            rec = await sv.items.store.get_record(item_id)
        except StoreUnavailable as exc:
            raise unavailable(exc) from exc
        if rec is None:
            raise HTTPException(404, f"unknown item {item_id}; POST /v1/items first")
        if not {"proxy", "diffusion", "fusion_weights"} <= rec.keys() or any(
                rec[k].shape != (d,) or not np.isfinite(rec[k]).all() for k in ("proxy", "diffusion")):
            raise HTTPException(409, f"item {item_id} has no usable stored expert outputs; re-POST it with overwrite=true")
        mask = np.array([[float("text" in rec["modalities"]), float("image" in rec["modalities"])]], np.float32)
        emb, w = await sv.graphs.run(sv.pipeline.regate, rec["proxy"][None], rec["diffusion"][None], mask,
                                          np.array([body.count]), None if id_emb is None else id_emb[None])
        emb, w = emb[0], w[0]
        extra = {"proxy": rec["proxy"], "diffusion": rec["diffusion"], "interactions": body.count,
                 "fusion_weights": rec["fusion_weights"]}
        if id_emb is not None:
            extra["id_embedding"] = id_emb
        try:
            await sv.items.put(item_id, emb, rec["modalities"], True, extra)
        except StoreUnavailable as exc:
            raise unavailable(exc) from exc
        alpha = [float(a) for a in rec["fusion_weights"].split(",")]
        return item_out(sv, item_id, emb, rec["modalities"], alpha, w, body.count)

    @app.post("/v1/items:batch", response_model=BatchOut, dependencies=[access(write=True)])
    async def post_items_batch(request: Request, st: AppState, sv: Live) -> BatchOut:
        """Bulk ingestion: JSON {"items": [...]} as for POST /v1/items; each graph runs once per batch.

        Answers 200 with one result per item, in order: the item, or its own status and detail
        (409, 422, 413, 503), so one bad item never fails the others.
        """
        s = st.settings
        if not request.headers.get("content-type", "").startswith("application/json"):
            raise HTTPException(415, "send application/json: {\"items\": [{\"item_id\", \"text\", \"image_base64\"}, ...]}")
        body = await read_json(request, ItemsBatchIn, s.max_batch_bytes)
        if len(body.items) > s.max_batch_items:
            raise HTTPException(413, f"at most {s.max_batch_items} items per batch")
        results: list[BatchResult] = [BatchResult(item_id=it.item_id, status=200) for it in body.items]
        todo: list[tuple[int, str, bool, tuple]] = []
        for n, it in enumerate(body.items):
            try:
                item_id, text, image, overwrite = _check_json_item(it, s)
                refuse_warm(sv, item_id)
                todo.append((n, item_id, overwrite, (text, image)))
            except HTTPException as exc:
                results[n] = BatchResult(item_id=it.item_id, status=exc.status_code, detail=exc.detail)
        embedded = await sv.graphs.run(sv.pipeline.embed_many, [t[3] for t in todo]) if todo else []

        async def one(n: int, item_id: str, overwrite: bool, result) -> None:
            try:
                results[n] = BatchResult(item_id=item_id, status=200, item=await store_item(st, sv, item_id, overwrite, result))
            except HTTPException as exc:
                results[n] = BatchResult(item_id=item_id, status=exc.status_code, detail=exc.detail)

        await asyncio.gather(*(one(n, i, o, r) for (n, i, o, _), r in zip(todo, embedded)))
        return BatchOut(bundle_version=sv.version, stored=sum(r.status == 200 for r in results), results=results)

    @app.get("/v1/items/{item_id}/embedding", response_model=EmbeddingOut, dependencies=[access(write=False)])
    async def get_embedding(item_id: str, sv: Live) -> Response:
        check_item_id(item_id)
        emb, source = await fetch(sv.items, item_id, "item")
        return fast_json({"item_id": item_id, "bundle_version": sv.version, "source": source, "embedding": emb.tolist()})

    @app.post("/v1/rank", response_model=RankOut, openapi_extra=json_body(RankIn), dependencies=[access(write=False)])
    async def rank(request: Request, st: AppState, sv: Live) -> Response:
        body = await read_json(request, RankIn, st.settings.max_request_bytes)
        ranked, missing = await rank_in(sv.items, body.user_id, body.item_ids, st.settings)
        return fast_json({"user_id": body.user_id, "bundle_version": sv.version, "missing": missing,
                          "scores": [{"item_id": i, "score": sc, "source": src} for i, sc, src in ranked]})

    @app.get("/v1/users/{user_id}/recommendations", response_model=RecommendOut, dependencies=[access(write=False)])
    async def recommend(user_id: str, st: AppState, sv: Live, k: Annotated[int, Query(ge=1)] = 10) -> Response:
        hits = top_k_in(sv.items, user_id, k, st.settings)
        return fast_json({"user_id": user_id, "bundle_version": sv.version,
                          "items": [{"item_id": i, "score": sc, "source": src} for i, sc, src in hits]})

    app.include_router(bundle_router)
    return app


