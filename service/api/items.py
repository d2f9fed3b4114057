"""Item routes (v1): POST /v1/items (multipart or JSON), POST /v1/items:batch, POST
/v1/items/{id}/interactions, PUT /v1/items:id-embeddings (the recommender's own vectors), GET
/v1/items/{id}/embedding, and take-downs: DELETE /v1/items/{id}, POST /v1/items/{id}/restore. Handlers parse and answer;
the write path itself is ``service.writes``."""

from __future__ import annotations

import base64
import binascii

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.exceptions import HTTPException

from coldproxy.config import ServiceSettings
from coldproxy.errors import BadRequest, ColdproxyError, InvalidInput, TooLarge, UnsupportedMediaType
from coldproxy.ids import ID_PATTERN, check_id
from coldproxy.protocol import (
    BatchOut,
    EmbeddingOut,
    IdVectorsIn,
    IdVectorsOut,
    InteractionsIn,
    ItemJSON,
    ItemOut,
    ItemsBatchIn,
    versions,
)
from service import reads
from service.api.deps import ADMIN, READ, WRITE, AppState, Live, access
from service.api.errors import batch_result, id_vectors_out
from service.api.http import check_length, fast_json, json_body, read_json
from service.writes import (
    NewItem,
    ingest,
    ingest_many,
    record_interactions,
    restore,
    sync_id_vectors,
    take_down,
)

router = APIRouter()

ITEM_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["item_id"],
                    "properties": {
                        "item_id": {"type": "string", "pattern": ID_PATTERN},
                        "text": {"type": "string"},
                        "image": {"type": "string", "format": "binary"},
                        "overwrite": {"type": "boolean"},
                    },
                }
            },
            "application/json": {"schema": ItemJSON.model_json_schema()},
        },
    }
}

BATCH_BODY = {  # documented by hand: the handler reads the body itself, to bound its size before parsing
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["items"],
                    "properties": {"items": {"type": "array", "minItems": 1, "items": ItemJSON.model_json_schema()}},
                }
            }
        },
    }
}


async def read_new_item(request: Request, settings: ServiceSettings) -> NewItem:
    """Parse multipart (item_id, text, image file, overwrite) or JSON (image as base64)."""
    ctype = request.headers.get("content-type", "")
    key = request.headers.get("idempotency-key")
    if ctype.startswith("application/json"):
        return json_item(await read_json(request, ItemJSON), settings, key)
    check_length(request, settings.max_request_bytes)
    if not ctype.startswith(("multipart/form-data", "application/x-www-form-urlencoded")):
        raise UnsupportedMediaType("send multipart/form-data (or a url-encoded form without image) or application/json")
    try:
        form = await request.form(max_files=1, max_fields=10, max_part_size=settings.max_request_bytes)
    except (HTTPException, ColdproxyError):  # Starlette's answer to too many parts or fields; our 413
        raise
    except Exception as exc:
        raise BadRequest(f"malformed multipart body: {exc}") from exc
    item_id, text, upload = form.get("item_id"), form.get("text"), form.get("image")
    if not isinstance(item_id, str):
        raise InvalidInput("form field item_id is required")
    if text is not None and not isinstance(text, str):
        raise InvalidInput("form field text must be a string")
    if isinstance(upload, str):
        raise InvalidInput("form field image must be a file")
    image = None if upload is None else await upload.read()
    overwrite = str(form.get("overwrite", "false")).lower() in ("1", "true", "yes")
    return NewItem.checked(item_id, text, image, overwrite, settings, key)


def json_item(body: ItemJSON, settings: ServiceSettings, idempotency_key: str | None = None) -> NewItem:
    try:
        image = base64.b64decode(body.image_base64, validate=True) if body.image_base64 else None
    except (binascii.Error, ValueError) as exc:
        raise InvalidInput(f"image_base64 is not valid base64: {exc}") from exc
    return NewItem.checked(body.item_id, body.text, image, body.overwrite, settings, idempotency_key)


@router.post("/v1/items", response_model=ItemOut, openapi_extra=ITEM_BODY, dependencies=[access(WRITE)])
async def post_item(request: Request, st: AppState, sv: Live) -> Response:
    """Embed a new item from its image and/or text and store it. With an ``Idempotency-Key`` header (an ID-like
    string of your choosing, stored with the item), a retry after an answer that got lost (a 503, a timeout) whose
    write had landed gets the stored item back (header ``Idempotent-Replay: true``) instead of a 409."""
    item = await read_new_item(request, st.settings)
    out, replayed = await ingest(sv, item)
    if replayed:
        return Response(out.model_dump_json(), media_type="application/json", headers={"Idempotent-Replay": "true"})
    return fast_json(out.model_dump())


@router.post(
    "/v1/items/{item_id}/interactions",
    response_model=ItemOut,
    openapi_extra=json_body(InteractionsIn),
    dependencies=[access(WRITE)],
)
async def post_interactions(item_id: str, request: Request, st: AppState, sv: Live) -> ItemOut:
    """Warm-up path: tell the service how many interactions a new item has had (and, optionally, the
    ID embedding your recommender has learnt for it so far); the cold-aware gate re-mixes the
    experts and the served embedding moves from content towards the ID embedding as the gate says.
    Once retraining makes the item warm, the new model package serves it from the ID model."""
    check_id(item_id)
    body = await read_json(request, InteractionsIn)
    return await record_interactions(sv, item_id, body.count, body.id_embedding)


@router.post("/v1/items:batch", response_model=BatchOut, dependencies=[access(WRITE)], openapi_extra=BATCH_BODY)
async def post_items_batch(request: Request, st: AppState, sv: Live) -> BatchOut:
    """Bulk ingestion: JSON {"items": [...]} as for POST /v1/items; each graph runs once per batch.

    Answers 200 with one result per item, in order: the item, or its own status and detail
    (409, 422, 413, 503), so one bad item never fails the others.
    """
    settings = st.settings
    if not request.headers.get("content-type", "").startswith("application/json"):
        raise UnsupportedMediaType('send application/json: {"items": [{"item_id", "text", "image_base64"}, ...]}')
    body = await read_json(request, ItemsBatchIn)
    if len(body.items) > settings.max_batch_items:
        raise TooLarge(f"at most {settings.max_batch_items} items per batch")
    items: list[NewItem | ColdproxyError] = []
    for it in body.items:
        try:
            items.append(json_item(it, settings))
        except ColdproxyError as exc:
            items.append(exc)
    results = [batch_result(it.item_id, r) for it, r in zip(body.items, await ingest_many(sv, items))]
    return BatchOut(package_version=sv.version, stored=sum(r.status == 200 for r in results), results=results)


@router.put(
    "/v1/items:id-embeddings",
    response_model=IdVectorsOut,
    openapi_extra=json_body(IdVectorsIn),
    dependencies=[access(ADMIN)],
)
async def put_id_embeddings(request: Request, st: AppState, sv: Live) -> IdVectorsOut:
    """Follow the recommender as it retrains: its latest vectors for items, served from now on by every replica
    (``coldproxy sync-ids FILE`` sends an export in chunks). A warm item's vector replaces the package's; a new item
    POSTed earlier graduates to its ID vector; an item the service did not know is added only with ``add_unknown``
    (else it fails alone with 404). 200 with one result per item, in order; a vector refused (dimension, values, a
    norm past the largest warm item's) fails alone with 422. Admin scope: these vectors decide what every user is
    recommended. A retrain into a new space is a new model package and a rollout, not this route: warm items whose
    vectors point elsewhere than the served ones get 409 (``check_plausible``)."""
    if not request.headers.get("content-type", "").startswith("application/json"):
        raise UnsupportedMediaType('send application/json: {"items": [{"item_id", "embedding"}, ...]}')
    body = await read_json(request, IdVectorsIn)
    if len(body.items) > st.settings.max_id_vectors:
        raise TooLarge(f"at most {st.settings.max_id_vectors} vectors per request (COLDPROXY_MAX_ID_VECTORS)")
    s = st.settings
    outcomes = await sync_id_vectors(
        sv,
        [(it.item_id, it.embedding) for it in body.items],
        body.id_space,
        body.add_unknown,
        s.id_sync_min_anchors,
        s.id_sync_min_cosine,
    )
    return id_vectors_out(sv.version, sv.package.id_fingerprint, [it.item_id for it in body.items], outcomes)


@router.get("/v1/items/{item_id}/embedding", response_model=EmbeddingOut, dependencies=[access(READ)])
async def get_embedding(item_id: str, sv: Live) -> Response:
    check_id(item_id)
    emb, source = await reads.fetch(sv.items, item_id, "item")
    return fast_json({"item_id": item_id, **versions(sv.version), "source": source, "embedding": emb.tolist()})


@router.delete(
    "/v1/items/{item_id}",
    status_code=204,
    dependencies=[access(WRITE)],
    responses={404: {"description": "no such item, or already taken down"}},
)
async def delete_item(item_id: str, sv: Live) -> Response:
    """Take an item down (out of stock, posted by mistake, a policy or privacy request): a new item's stored vector
    and kept content features are deleted (a rollout will not re-embed it; POST it again to bring it back); a warm
    item of the package is hidden (``POST /v1/items/{id}/restore`` shows it again), also in later packages. Every
    replica drops it within the sync delay: GET answers 404, rank lists it in ``missing``, recommendations leave it
    out. 204 when taken down; a second DELETE answers 404."""
    check_id(item_id)
    await take_down(sv, item_id)
    return Response(status_code=204)


@router.post(
    "/v1/items/{item_id}/restore",
    status_code=204,
    dependencies=[access(WRITE)],
    responses={404: {"description": "not a hidden warm item"}},
)
async def restore_item(item_id: str, sv: Live) -> Response:
    """Show a warm item that ``DELETE /v1/items/{id}`` hid again, on every replica. 404 when it is not hidden (a
    deleted new item has no vector left: POST it again)."""
    check_id(item_id)
    await restore(sv, item_id)
    return Response(status_code=204)
