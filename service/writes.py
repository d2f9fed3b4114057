"""The write paths, below the routes (``service.reads`` holds the reads): a ``NewItem`` (however it arrived, an
idempotent retry given back as stored) -> the ONNX pipeline (through the micro-batcher) -> Redis and this replica's
index; the warm-up path that re-gates a stored item when its interaction count (or ID embedding) arrives; the
recommender's own ID vectors; take-downs; and the items kept as seen by a user. Failures are ``ColdproxyError``s.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, replace

import numpy as np
from anyio import to_thread

from coldproxy.config import ServiceSettings
from coldproxy.errors import ColdproxyError, Conflict, ImageError, InvalidInput, NotFound, TooLarge
from coldproxy.ids import check_id
from coldproxy.preprocess import image_cost
from coldproxy.protocol import ItemOut
from service.engine.pipeline import Embedded
from service.serving import Serving
from service.storage.history import UserHistory

log = logging.getLogger("coldproxy.items")

REGATE_ATTEMPTS = 3
IDEMPOTENCY_FIELD = "idem"  # the item hash's field holding the Idempotency-Key of the POST that stored it


@dataclass(frozen=True)
class NewItem:
    """An item to ingest, checked: a valid ID, stripped text and/or image bytes within the limits."""

    item_id: str
    text: str | None
    image: bytes | None
    overwrite: bool = False
    idempotency_key: str | None = None  # stored with the item: a retry with the same key gets the item back

    @classmethod
    def checked(
        cls,
        item_id: str,
        text: str | None,
        image: bytes | None,
        overwrite: bool,
        settings: ServiceSettings,
        idempotency_key: str | None = None,
    ) -> "NewItem":
        """The checks every ingested item passes, whatever its transport; a ``ColdproxyError`` on the first failure."""
        check_id(item_id)
        if idempotency_key is not None:
            check_id(idempotency_key, "the Idempotency-Key header")
        if text is not None:
            text = text.strip() or None
            if text and len(text) > settings.max_text_chars:
                raise TooLarge(f"text longer than {settings.max_text_chars} characters")
        if image is not None and len(image) == 0:
            image = None
        if image is not None and len(image) > settings.max_request_bytes:
            raise TooLarge(f"image larger than {settings.max_request_bytes} bytes")
        if text is None and image is None:
            raise InvalidInput("an item needs text, an image, or both")
        return cls(item_id, text, image, overwrite, idempotency_key)


def refuse_warm(serving: Serving, item_id: str) -> None:
    """``Conflict`` for an item the model package holds: by its ID vector, or by the package's own proxy (an item of
    its catalogue without interactions, which the next package's training sees)."""
    if item_id in serving.items.proxies:
        raise Conflict(
            f"item {item_id} is in model package {serving.version}'s catalogue, served by the package's "
            "proxy: the next package trained on its interactions serves it by its ID vector (a changed "
            "item needs a new ID)"
        )
    if item_id in serving.items.warm:
        raise Conflict(f"item {item_id} is warm: it is served from the ID model")


def item_out(
    serving: Serving,
    item_id: str,
    emb: np.ndarray,
    modalities: list[str],
    alpha,
    experts,
    interactions: int | None = None,
) -> ItemOut:
    names = serving.package.manifest.experts["experts"] if experts is not None else None
    return ItemOut(
        item_id=item_id,
        package_version=serving.version,
        source="proxy",
        modalities=modalities,
        fusion_weights={"text": float(alpha[0]), "image": float(alpha[1])},
        expert_weights=None if experts is None else dict(zip(names, map(float, experts))),
        interactions=interactions,
        embedding=emb.tolist(),
    )


async def replay(serving: Serving, item: NewItem) -> ItemOut | None:
    """The item a POST with the same idempotency key stored (a retry after an answer that got lost: a 503 or a
    timeout whose write had landed), or None."""
    if item.idempotency_key is None:
        return None
    rec = await serving.items.store.get_record(item.item_id)
    if rec is None or rec.fields.get(IDEMPOTENCY_FIELD) != item.idempotency_key:
        return None
    return item_out(
        serving, item.item_id, rec.embedding, rec.modalities, rec.fusion_weights or [0.0, 0.0], None, rec.interactions
    )


async def store_embedded(serving: Serving, item: NewItem, result: Embedded | ImageError) -> ItemOut:
    """Embedding result -> Redis (with its content features) -> FAISS, and the same item into the package
    being rolled out, when there is one; 409, 422 or 503 (``ColdproxyError``) when it cannot be stored."""
    if isinstance(result, ImageError):
        raise result
    item_id, overwrite = item.item_id, item.overwrite
    record = serving.stored_record(result)
    if item.idempotency_key is not None:
        record = replace(record, fields=record.fields | {IDEMPOTENCY_FIELD: item.idempotency_key})
    if not await serving.items.put(item_id, record, overwrite, result.features):
        if (again := await replay(serving, item)) is not None:  # the same request, twice at once
            return again
        raise Conflict(
            f"item {item_id} already exists for model package {serving.version}; send overwrite=true to replace it"
        )
    serving.drift.observe(record.embedding, result.fusion_weights, result.expert_weights)
    if serving.shadow is not None and result.features is not None:
        await serving.shadow.write(item_id, overwrite, result.features)
    return item_out(serving, item_id, record.embedding, result.modalities, result.fusion_weights, result.expert_weights)


async def prepare(serving: Serving, item: NewItem):
    """Decode and resize the item's image in a thread, within the decode budget (its peak bytes reserved first)."""
    need = image_cost(item.image)[1] if item.image is not None else 0
    async with serving.decode_budget.reserve(need):
        return await to_thread.run_sync(serving.pipeline.prepare, item.text, item.image)


async def ingest(serving: Serving, item: NewItem) -> tuple[ItemOut, bool]:
    """One item, and whether it is a replay: the item a POST with the same idempotency key stored, given back as it
    is; else decode in a thread (in parallel with others), then the graphs through the micro-batcher."""
    stored = await replay(serving, item)
    if stored is not None:
        return stored, True
    refuse_warm(serving, item.item_id)
    if serving.batcher is not None:
        serving.batcher.check_room()  # a full queue refuses before the decode is paid for
    prepared = await prepare(serving, item)
    if serving.batcher is None:
        async with serving.admission.admit(1):
            result = (await serving.graphs.run(serving.pipeline.infer, [prepared]))[0]
    else:
        result = await serving.batcher.submit(prepared)
    return await store_embedded(serving, item, result), False


async def ingest_many(serving: Serving, items: list[NewItem | ColdproxyError]) -> list[ItemOut | ColdproxyError]:
    """A batch: each graph once over the items that passed their checks (the others arrive as their error
    already); one outcome per item, in order -- the item stored or its error -- so one bad item never fails the
    others."""
    results: list[ItemOut | ColdproxyError] = list(items)
    todo: list[tuple[int, NewItem]] = []
    for n, it in enumerate(items):
        if isinstance(it, NewItem):
            try:
                refuse_warm(serving, it.item_id)
                todo.append((n, it))
            except ColdproxyError as exc:
                results[n] = exc
    embedded = []
    if todo:
        async with serving.admission.admit(len(todo)):
            prepared = await asyncio.gather(*(prepare(serving, it) for _, it in todo))  # each image its own reservation
            embedded = await serving.graphs.run(serving.pipeline.infer, list(prepared))

    async def one(position: int, it: NewItem, result) -> None:
        try:
            results[position] = await store_embedded(serving, it, result)
        except ColdproxyError as exc:
            results[position] = exc

    await asyncio.gather(*(one(n, it, r) for (n, it), r in zip(todo, embedded)))
    return results


async def sync_id_vector(serving: Serving, item_id: str, values: list[float], add: bool = True) -> str | ColdproxyError:
    """Serve the recommender's own vector for one item from now on, on every replica: a warm item's replaces the
    package's, a stored new item graduates (its experts' outputs are kept for the warm-up path), an item the service
    did not know is added when ``add`` (else 404). The vector is checked like any input
    (``Catalog.entry_vector``: its norm within the largest warm item's). The outcome (``IdVectorResult``'s), or the
    item's error."""
    catalog = serving.items
    try:
        check_id(item_id)
        vec = catalog.entry_vector(values, "embedding")
        if not add:
            raise NotFound(f"unknown item {item_id}: POST it first, or send add_unknown to add it")
    except ColdproxyError as exc:
        return exc
    outcome, previous = await catalog.give(item_id, vec)
    if outcome == "graduated" and previous.proxy is not None:
        serving.drift.graduation(previous.proxy, vec)
    return outcome


def check_plausible(
    serving: Serving, items: list[tuple[str, list[float]]], min_anchors: int, min_cosine: float
) -> None:
    """409 when the items among ``items`` served by an ID vector (at least ``min_anchors`` of them) point elsewhere
    than the vectors served for them (mean cosine below ``min_cosine``): vectors of another space of the same
    dimension -- a retrain from scratch, a wrong export -- whatever space they are labelled with."""
    catalog = serving.items
    anchors = [
        (catalog.warm[i], v)
        for i, v in items  # served by an ID vector (a proxy is only near its item's)
        if i in catalog.warm and (i not in catalog.proxies or i in catalog.given) and len(v) == catalog.dim
    ]
    if len(anchors) < min_anchors:
        return
    sent = np.asarray([v for _, v in anchors], dtype=np.float64)
    served = catalog.warm_emb[[row for row, _ in anchors]].astype(np.float64)
    norms = np.linalg.norm(sent, axis=1) * np.linalg.norm(served, axis=1)
    if not np.isfinite(sent).all() or not (norms > 0).all():
        return  # such vectors fail alone, with their own 422
    cosine = float(np.mean(np.sum(sent * served, axis=1) / norms))
    if cosine < min_cosine:
        raise Conflict(
            f"the {len(anchors)} warm items sent have mean cosine {cosine:.3f} to the vectors served for "
            f"them (COLDPROXY_ID_SYNC_MIN_COSINE {min_cosine:g}): not this ID space; nothing stored. A new "
            "space is a new model package and a rollout"
        )


async def sync_id_vectors(
    serving: Serving,
    items: list[tuple[str, list[float]]],
    space: str | None,
    add_unknown: bool = False,
    min_anchors: int = 3,
    min_cosine: float = 0.3,
) -> list[str | ColdproxyError]:
    """``sync_id_vector`` for each item, its outcome in order (one bad vector fails alone); the package being rolled out
    gets them too
    when it serves the same ID space (a package of another space needs its own recommender's vectors).
    ``space``, when the client names the vectors' space, must be the serving one's, and the warm items sent must
    agree with it (``check_plausible``): else 409, nothing stored."""
    fingerprint = serving.package.id_fingerprint
    if space is not None and space != fingerprint:
        raise Conflict(
            f"these vectors are of ID space {space}; this service serves {fingerprint} (GET /v1/model): "
            "a new space is a new model package and a rollout"
        )
    check_plausible(serving, items, min_anchors, min_cosine)
    warm, stored = serving.items.warm, set()
    if not add_unknown:
        others = [i for i, _ in items if i not in warm]
        stored = {i for i, held in zip(others, await serving.items.store.exists_many(others) if others else []) if held}
    results = [await sync_id_vector(serving, i, v, add_unknown or i in warm or i in stored) for i, v in items]
    if serving.shadow is not None:
        target = serving.shadow.target
        if target.package.id_fingerprint == fingerprint:
            for (i, v), r in zip(items, results):
                if isinstance(r, str) and r != "unchanged":
                    await sync_id_vector(target, i, v)
        else:
            log.info(
                "the package being rolled out (%s) serves another ID space: %d synced vectors not written to it",
                target.version,
                len(items),
            )
    return results


async def record_interactions(serving: Serving, item_id: str, count: int, id_embedding: list[float] | None) -> ItemOut:
    """Re-gate a stored new item with its interaction count (and the recommender's ID embedding, if sent)."""
    refuse_warm(serving, item_id)
    if not serving.package.has_experts:
        raise Conflict(
            f"model package {serving.version} has no cold-aware gate; interaction counts do not change its proxies"
        )
    dim = serving.package.manifest.dims.id_dim
    id_emb = None
    if id_embedding is not None:  # no longer than any warm item's: one with a huge norm would top every ranking
        id_emb = serving.items.entry_vector(id_embedding, "id_embedding", serving.max_item_norm)
    for _ in range(REGATE_ATTEMPTS):  # read, re-gate, write back only if no other write landed in between
        rec = await serving.items.store.get_record(item_id)
        if rec is None:
            raise NotFound(f"unknown item {item_id}; POST /v1/items first")
        if not rec.has_experts(dim, serving.pipeline.gate_has_anchor):
            raise Conflict(f"item {item_id} has no usable stored expert outputs; re-POST it with overwrite=true")
        mask = np.array([[float("text" in rec.modalities), float("image" in rec.modalities)]], np.float32)
        anchor = rec.anchor[None] if rec.anchor is not None else None
        async with serving.admission.admit(1):
            emb, weights = await serving.graphs.run(
                serving.pipeline.regate,
                rec.proxy[None],
                rec.diffusion[None],
                anchor,
                mask,
                np.array([count]),
                None if id_emb is None else id_emb[None],
            )
        emb, weights = emb[0], weights[0]
        # the gate's mix is served from now on, also for an item the recommender had given its own vector (no
        # longer "id")
        regated = replace(
            rec,
            embedding=emb,
            interactions=count,
            id_embedding=rec.id_embedding if id_emb is None else id_emb,
            fields={k: v for k, v in rec.fields.items() if k != "src"},
        )
        if await serving.items.put(item_id, regated, True, expect=rec):
            break
    else:
        raise Conflict(f"item {item_id} kept changing while it was re-gated ({REGATE_ATTEMPTS} tries); send it again")
    if serving.items.store.features is not None:  # a re-embedding for a new package re-gates with these too
        await serving.items.store.features.note_warm_up(item_id, count, id_emb, serving.package.id_fingerprint)
    if id_emb is not None:
        serving.drift.graduation(rec.proxy, id_emb)
    if serving.shadow is not None:  # the package being rolled out holds the item too
        target = serving.shadow.target
        same_space = target.package.id_fingerprint == serving.package.id_fingerprint
        try:
            await record_interactions(target, item_id, count, id_embedding if same_space else None)
        except ColdproxyError as exc:
            log.warning("warm-up of %s not applied to %s: %s", item_id, target.version, exc.detail)
    return item_out(serving, item_id, emb, rec.modalities, rec.fusion_weights, weights, count)


async def take_down(serving: Serving, item_id: str) -> None:
    """Delete a new item (its stored vector and kept features) or hide a warm one, on every replica and in the
    package being rolled out (after the serving one, so a retry after a failure reaches both); ``NotFound`` when
    neither held it visibly (a second DELETE)."""
    removed = await serving.items.delete(item_id)
    if serving.shadow is not None:
        removed = await serving.shadow.take_down(item_id) or removed
    if not removed:
        raise NotFound(f"no item {item_id} to take down (unknown, or already taken down)")


async def restore(serving: Serving, item_id: str) -> None:
    """Show a hidden warm item again, on every replica; ``NotFound`` when it is not hidden."""
    if not await serving.items.restore(item_id):
        raise NotFound(f"item {item_id} is not hidden")
    if serving.shadow is not None and item_id in serving.shadow.target.items.warm:
        await serving.shadow.target.items.restore(item_id)


def history_of(serving: Serving) -> UserHistory:
    if serving.items.history is None:
        raise Conflict("this deployment keeps no user interactions (COLDPROXY_USER_HISTORY=0, or no Redis)")
    return serving.items.history


async def keep_seen(serving: Serving, user_id: str, item_ids: list[str], limit: int) -> int:
    """Keep ``item_ids`` as seen by ``user_id`` (a user the serving package knows: 404 otherwise), at most ``limit``
    per call (413); how many are kept for the user now."""
    history = history_of(serving)
    if serving.items.user_vector(user_id) is None:
        raise NotFound(f"unknown user {user_id}: items are kept only for users the serving package knows")
    if len(item_ids) > limit:
        raise TooLarge(f"at most {limit} items per request (COLDPROXY_USER_HISTORY)")
    for item_id in item_ids:
        check_id(item_id, "each of item_ids")
    return await history.add(user_id, item_ids)


async def forget_seen(serving: Serving, user_id: str) -> None:
    """Forget the items kept for ``user_id`` (a privacy request); 404 when none were kept."""
    if not await history_of(serving).forget(user_id):
        raise NotFound(f"no interactions kept for user {user_id}")
