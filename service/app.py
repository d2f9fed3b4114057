"""FastAPI app factory: lifespan loads the bundle, opens the store, builds the FAISS index.

Endpoints (v1): POST /v1/items, GET /v1/items/{id}/embedding, POST /v1/rank,
GET /v1/users/{id}/recommendations, /healthz, /readyz, /metrics. Docs at /docs.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import logging
import re
import time
from contextlib import asynccontextmanager
from typing import Annotated

import numpy as np
from anyio import to_thread
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import ValidationError

from coldproxy.bundle import load_bundle
from coldproxy.config import ServiceSettings
from coldproxy.preprocess import ImageError
from service.index import ItemIndex
from service.metrics import Metrics
from service.pipeline import ProxyPipeline
from service.schemas import ITEM_ID_PATTERN, EmbeddingOut, ItemJSON, ItemOut, ModelOut, RankIn, RankOut, RecommendOut, Scored
from service.store import MemoryStore, RedisStore, StoreUnavailable
from service.sync import IndexSync

log = logging.getLogger("coldproxy")
ITEM_ID_RE = re.compile(ITEM_ID_PATTERN)


class State:
    """Everything the lifespan builds; routes get it through the ``AppState`` dependency."""

    def __init__(self, settings: ServiceSettings):
        self.settings = settings
        self.metrics = Metrics()
        self.ready = False

    async def start(self) -> None:
        s = self.settings
        self.bundle = load_bundle(s.bundle_dir)
        self.version = self.bundle.manifest.version
        dim = self.bundle.manifest.dims.id_dim
        self.pipeline = ProxyPipeline(self.bundle, self.metrics, s.ort_providers, s.ort_intra_threads, s.max_image_pixels)
        self.users = {u: i for i, u in enumerate(self.bundle.user_ids)}
        self.warm = {it: i for i, it in enumerate(self.bundle.item_ids)}
        self.store = RedisStore(s.redis_url, s.redis_prefix, self.version, dim)
        if not await self.store.ping():
            if not s.allow_memory_store:
                raise RuntimeError(f"Redis at {s.redis_url} does not answer (set COLDPROXY_ALLOW_MEMORY_STORE=1 for a demo without it)")
            log.warning("Redis at %s does not answer: using an in-process store; nothing will persist", s.redis_url)
            await self.store.close()
            self.store = MemoryStore(self.version, dim)
        self.index = ItemIndex(dim)
        self.index.upsert(self.bundle.item_ids, self.bundle.item_emb)
        self.sync = IndexSync(self.store, self.index, self.metrics, self.warm)
        n_cold = await self.sync.start()
        self.metrics.items_indexed.labels("warm").set(len(self.warm))
        log.info("bundle %s loaded: %d users, %d warm items, %d cold items from the store, providers %s",
                 self.version, len(self.users), len(self.warm), n_cold, self.pipeline.providers)
        self.ready = True

    async def stop(self) -> None:
        self.ready = False
        if hasattr(self, "sync"):
            await self.sync.stop()
        if hasattr(self, "store"):
            await self.store.close()


def get_state(request: Request) -> State:
    return request.app.state.coldproxy


AppState = Annotated[State, Depends(get_state)]


def require_api_key(request: Request, state: AppState) -> None:
    key = state.settings.api_key
    if key and not hmac.compare_digest(request.headers.get("x-api-key", "").encode(), key.encode()):
        raise HTTPException(401, "missing or wrong X-API-Key")


def check_item_id(item_id: str) -> str:
    if not ITEM_ID_RE.fullmatch(item_id or ""):
        raise HTTPException(422, f"item_id must match {ITEM_ID_PATTERN}")
    return item_id


def unavailable(exc: Exception) -> HTTPException:
    return HTTPException(503, f"store unavailable: {exc}", headers={"Retry-After": "1"})


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
        try:
            body = ItemJSON.model_validate_json(await request.body())
        except ValidationError as exc:
            raise HTTPException(422, exc.errors(include_url=False, include_context=False, include_input=False)) from exc
        item_id, text, overwrite = body.item_id, body.text, body.overwrite
        try:
            image = base64.b64decode(body.image_base64, validate=True) if body.image_base64 else None
        except (binascii.Error, ValueError) as exc:
            raise HTTPException(422, f"image_base64 is not valid base64: {exc}") from exc
    else:
        raise HTTPException(415, "send multipart/form-data (or a url-encoded form without image) or application/json")
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
        try:
            yield
        finally:
            await state.stop()

    app = FastAPI(title="coldproxy", version="1", lifespan=lifespan,
                  description="Proxy embeddings for cold-start items, aligned to the recommender's ID space.")
    app.state.coldproxy = state

    @app.middleware("http")
    async def observe(request: Request, call_next):
        t = time.perf_counter()
        status = 500
        try:
            response = await call_next(request)
            status = response.status_code
            return response
        finally:
            route = request.scope.get("route")
            path = getattr(route, "path", "unmatched")
            state.metrics.requests.labels(path, request.method, str(status)).inc()
            state.metrics.latency.labels(path, request.method).observe(time.perf_counter() - t)

    @app.exception_handler(Exception)
    async def unhandled(request: Request, exc: Exception):
        log.exception("unhandled error on %s", request.url.path)
        return JSONResponse({"detail": "internal error"}, status_code=500)

    @app.get("/healthz")
    async def healthz() -> dict:
        return {"status": "alive"}

    @app.get("/readyz")
    async def readyz(st: AppState):
        if not st.ready:
            return JSONResponse({"status": "loading"}, status_code=503)
        if not await st.store.ping():
            return JSONResponse({"status": "store unavailable"}, status_code=503)
        return {"status": "ready", "bundle_version": st.version}

    @app.get("/metrics")
    async def metrics(st: AppState):
        return PlainTextResponse(generate_latest(st.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/model", response_model=ModelOut)
    async def model(st: AppState) -> ModelOut:
        m = st.bundle.manifest
        return ModelOut(bundle_version=m.version, created_at=m.created_at, dims=m.dims.model_dump(), encoders=m.encoders,
                        counts=m.counts, cold_items_indexed=len(st.index) - len(st.warm),
                        providers=st.pipeline.providers, test_metrics=m.metrics.get("test", {}))

    @app.post("/v1/items", response_model=ItemOut, openapi_extra=ITEM_BODY, dependencies=[Depends(require_api_key)])
    async def post_item(request: Request, st: AppState) -> ItemOut:
        item_id, text, image, overwrite = await _read_item(request, st.settings)
        if item_id in st.warm:
            raise HTTPException(409, f"item {item_id} is warm: it is served from the ID model")
        try:
            emb, present = await to_thread.run_sync(st.pipeline.embed, text, image)
        except ImageError as exc:
            raise HTTPException(422, str(exc)) from exc
        if not np.isfinite(emb).all():
            raise HTTPException(422, "the model produced a non-finite embedding for this input")
        with st.metrics.time_stage("store"):
            try:
                stored = await st.store.put(item_id, emb, present, overwrite)
            except StoreUnavailable as exc:
                raise unavailable(exc) from exc
        if not stored:
            raise HTTPException(409, f"item {item_id} already exists for bundle {st.version}; send overwrite=true to replace it")
        with st.metrics.time_stage("index"):
            st.sync.add([item_id], emb[None])
        return ItemOut(item_id=item_id, bundle_version=st.version, source="proxy", modalities=present, embedding=emb.tolist())

    async def lookup(st: State, item_ids: list[str]) -> dict[str, tuple[np.ndarray, str]]:
        out = {i: (st.bundle.item_emb[st.warm[i]], "id") for i in item_ids if i in st.warm}
        rest = [i for i in item_ids if i not in st.warm and ITEM_ID_RE.fullmatch(i)]
        try:
            cold = await st.store.get_many(rest)
        except StoreUnavailable as exc:
            raise unavailable(exc) from exc
        out.update({i: (v, "proxy") for i, v in cold.items()})
        for source in ("id", "proxy"):
            st.metrics.lookups.labels(source).inc(sum(1 for _, s in out.values() if s == source))
        st.metrics.lookups.labels("miss").inc(len(item_ids) - len(out))
        return out

    @app.get("/v1/items/{item_id}/embedding", response_model=EmbeddingOut)
    async def get_embedding(item_id: str, st: AppState) -> EmbeddingOut:
        check_item_id(item_id)
        found = await lookup(st, [item_id])
        if item_id not in found:
            raise HTTPException(404, f"unknown item {item_id}")
        emb, source = found[item_id]
        return EmbeddingOut(item_id=item_id, bundle_version=st.version, source=source, embedding=emb.tolist())

    def user_vector(st: State, user_id: str) -> np.ndarray:
        if user_id not in st.users:
            raise HTTPException(404, f"unknown user {user_id}")
        return st.bundle.user_emb[st.users[user_id]]

    @app.post("/v1/rank", response_model=RankOut)
    async def rank(body: RankIn, st: AppState) -> RankOut:
        if len(body.item_ids) > st.settings.max_candidates:
            raise HTTPException(413, f"at most {st.settings.max_candidates} candidates per request")
        u = user_vector(st, body.user_id)
        ids = list(dict.fromkeys(body.item_ids))
        found = await lookup(st, ids)
        known = [i for i in ids if i in found]
        scores = np.stack([found[i][0] for i in known]) @ u if known else np.zeros(0)
        order = np.argsort(-scores, kind="stable")
        return RankOut(
            user_id=body.user_id, bundle_version=st.version,
            scores=[Scored(item_id=known[j], score=float(scores[j]), source=found[known[j]][1]) for j in order],
            missing=[i for i in ids if i not in found],
        )

    @app.get("/v1/users/{user_id}/recommendations", response_model=RecommendOut)
    async def recommend(user_id: str, st: AppState, k: Annotated[int, Query(ge=1)] = 10) -> RecommendOut:
        if k > st.settings.max_k:
            raise HTTPException(422, f"k must be at most {st.settings.max_k}")
        u = user_vector(st, user_id)
        hits = st.index.search(u, k)
        return RecommendOut(user_id=user_id, bundle_version=st.version,
                            items=[Scored(item_id=i, score=s, source="id" if i in st.warm else "proxy") for i, s in hits])

    return app
