"""What the sync and async clients share: one method per route saying what to send (a ``Call``) and what comes
back (a model of ``coldproxy.protocol``). ``Client`` and ``AsyncClient`` only differ in how they send; each
method here returns the typed result (sync) or an awaitable of it (async)."""

from __future__ import annotations

import base64
import mimetypes
import os
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from io import BytesIO
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

from pydantic import BaseModel

from coldproxy.bundle_protocol import BundleEmbeddingOut, BundleOut, BundleRankOut, BundleRecommendOut
from coldproxy.protocol import (
    BatchOut,
    EmbeddingOut,
    IdVectorsOut,
    ItemOut,
    ModelOut,
    RankOut,
    RecommendOut,
    ReloadOut,
    UserInteractionsOut,
)

ImageLike = Any  # a path (str or os.PathLike), the file's bytes, or a PIL image


@dataclass(frozen=True)
class Call:
    """One request. ``model`` parses a 2xx body (None: the route answers 204); ``resend`` says whether the request
    may be sent again after an answer that got lost (a reset connection, a timeout, a 502/504 from a proxy)."""

    method: str
    path: str
    model: type[BaseModel] | None
    json: dict | None = None
    files: dict | None = None
    data: dict | None = None
    params: dict | None = None
    headers: dict = field(default_factory=dict)
    resend: bool = True


@dataclass(frozen=True)
class Item:
    """A new item for ``post_items``: its ID and its content (text, image or both)."""

    item_id: str
    text: str | None = None
    image: ImageLike = None
    overwrite: bool = False


def image_file(image: ImageLike) -> tuple[str, bytes, str]:
    """``(filename, bytes, content type)`` of an image given as a path, bytes or a PIL image (sent as PNG, lossless,
    so the service embeds exactly these pixels)."""
    if isinstance(image, (bytes, bytearray, memoryview)):
        return "image", bytes(image), "application/octet-stream"
    if isinstance(image, (str, os.PathLike)):
        path = Path(image)
        return path.name, path.read_bytes(), mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    if hasattr(image, "save"):  # PIL.Image.Image, without importing Pillow for the clients that never pass one
        buf = BytesIO()
        image.save(buf, format="PNG")
        return "image.png", buf.getvalue(), "image/png"
    raise TypeError(f"image must be a path, bytes or a PIL image, not {type(image).__name__}")


def segment(value: str) -> str:
    """An ID as one URL path segment (the service refuses what its ID pattern does not allow, with a 422)."""
    return quote(value, safe="")


def floats(vector: Sequence[float]) -> list[float]:
    """A vector as JSON numbers (a numpy row at C speed)."""
    return vector.tolist() if hasattr(vector, "tolist") else [float(x) for x in vector]


def user_body(user_id: str | None, user_embedding: Sequence[float] | None, id_space: str | None) -> dict:
    if (user_id is None) == (user_embedding is None):
        raise ValueError("give exactly one of user_id and user_embedding")
    body: dict = {"user_id": user_id} if user_id is not None else {"user_embedding": floats(user_embedding)}
    if id_space is not None:
        body["id_space"] = id_space
    return body


def filters_body(
    exclude_seen: bool, only: str, created_after: datetime | float | None, exclude_ids: Sequence[str]
) -> dict:
    body: dict = {"exclude_seen": exclude_seen, "only": only, "exclude_ids": list(exclude_ids)}
    if created_after is not None:
        body["created_after"] = created_after.isoformat() if isinstance(created_after, datetime) else created_after
    return body


def merge_batches(outs: list[BatchOut]) -> BatchOut:
    """The answers to one ``post_items`` sent in several requests, as one."""
    return BatchOut(
        package_version=outs[-1].package_version,
        stored=sum(o.stored for o in outs),
        results=[r for o in outs for r in o.results],
    )


class Api:
    """The routes of the HTTP API (v1). Subclasses provide ``_send`` (one call) and ``_send_all`` (calls in order,
    their results combined)."""

    batch_size = 64  # items per POST /v1/items:batch (the service's default COLDPROXY_MAX_BATCH_ITEMS)

    def _send(self, call: Call):
        raise NotImplementedError

    def _send_all(self, calls: list[Call], combine: Callable[[list], Any]):
        raise NotImplementedError

    # items
    def post_item(
        self,
        item_id: str,
        *,
        text: str | None = None,
        image: ImageLike = None,
        overwrite: bool = False,
        idempotency_key: str | None = None,
    ) -> ItemOut:
        """Embed and store a new item from its text and/or image. Sent with an ``Idempotency-Key`` (one is made when
        none is given), so a retry after a lost answer gets the stored item back instead of a 409."""
        data = {"item_id": item_id, "overwrite": "true" if overwrite else "false"}
        if text is not None:
            data["text"] = text
        files = {"image": image_file(image)} if image is not None else None  # without one: a url-encoded form
        return self._send(
            Call(
                "POST",
                "/v1/items",
                ItemOut,
                data=data,
                files=files,
                headers={"Idempotency-Key": idempotency_key or uuid.uuid4().hex},
            )
        )

    def post_items(self, items: Iterable[Item | dict], *, batch_size: int | None = None) -> BatchOut:
        """Embed and store many items, ``batch_size`` per request. Each item gets its own result (200, or the status
        ``post_item`` would have had); one bad item never fails the others."""
        rows = []
        for it in items:
            it = it if isinstance(it, Item) else Item(**it)
            row: dict = {"item_id": it.item_id, "text": it.text, "overwrite": it.overwrite}
            if it.image is not None:
                row["image_base64"] = base64.b64encode(image_file(it.image)[1]).decode()
            rows.append(row)
        if not rows:
            raise ValueError("post_items needs at least one item")
        size = batch_size or self.batch_size
        calls = [
            Call("POST", "/v1/items:batch", BatchOut, json={"items": rows[i : i + size]}, resend=False)
            for i in range(0, len(rows), size)
        ]
        return self._send_all(calls, merge_batches)

    def embedding(self, item_id: str) -> EmbeddingOut:
        """The served vector of an item: its ID vector when warm, its proxy when new."""
        return self._send(Call("GET", f"/v1/items/{segment(item_id)}/embedding", EmbeddingOut))

    def record_interactions(self, item_id: str, count: int, id_embedding: Sequence[float] | None = None) -> ItemOut:
        """How many interactions a new item has had (and its ID vector in your recommender so far, if any)."""
        body: dict = {"count": count}
        if id_embedding is not None:
            body["id_embedding"] = floats(id_embedding)
        return self._send(Call("POST", f"/v1/items/{segment(item_id)}/interactions", ItemOut, json=body))

    def put_id_embeddings(
        self, vectors: dict[str, Sequence[float]], *, id_space: str | None = None, add_unknown: bool = False
    ) -> IdVectorsOut:
        """Your recommender's own vectors for items (warm ones replaced, new ones graduated; ones the service does not
        know added only with ``add_unknown``). Needs an admin key."""
        body: dict = {
            "items": [{"item_id": i, "embedding": floats(v)} for i, v in vectors.items()],
            "add_unknown": add_unknown,
        }
        if id_space is not None:
            body["id_space"] = id_space
        return self._send(Call("PUT", "/v1/items:id-embeddings", IdVectorsOut, json=body))

    def delete_item(self, item_id: str) -> None:
        """Take an item down (a new one is deleted, a warm one hidden until ``restore_item``)."""
        return self._send(Call("DELETE", f"/v1/items/{segment(item_id)}", None, resend=False))

    def restore_item(self, item_id: str) -> None:
        return self._send(Call("POST", f"/v1/items/{segment(item_id)}/restore", None))

    # ranking
    def rank(
        self,
        item_ids: Sequence[str],
        *,
        user_id: str | None = None,
        user_embedding: Sequence[float] | None = None,
        id_space: str | None = None,
    ) -> RankOut:
        """Scores of candidate items for a user of the package, or for a user vector of its ID space."""
        body = user_body(user_id, user_embedding, id_space) | {"item_ids": list(item_ids)}
        return self._send(Call("POST", "/v1/rank", RankOut, json=body))

    def recommend(
        self,
        *,
        user_id: str | None = None,
        user_embedding: Sequence[float] | None = None,
        k: int = 10,
        exclude_seen: bool = True,
        only: Literal["new", "warm", "all"] = "all",
        created_after: datetime | float | None = None,
        exclude_ids: Sequence[str] = (),
        id_space: str | None = None,
    ) -> RecommendOut:
        """The k best items for a user ID or a user vector, with the service's filters."""
        body = (
            user_body(user_id, user_embedding, id_space)
            | {"k": k}
            | filters_body(exclude_seen, only, created_after, exclude_ids)
        )
        return self._send(Call("POST", "/v1/recommendations", RecommendOut, json=body))

    def add_user_interactions(self, user_id: str, item_ids: Sequence[str]) -> UserInteractionsOut:
        """Items a user has seen since the package was trained: their recommendations leave them out."""
        return self._send(
            Call(
                "POST",
                f"/v1/users/{segment(user_id)}/interactions",
                UserInteractionsOut,
                json={"item_ids": list(item_ids)},
            )
        )

    def forget_user(self, user_id: str) -> None:
        """Forget the items kept for a user (a privacy request)."""
        return self._send(Call("DELETE", f"/v1/users/{segment(user_id)}/interactions", None, resend=False))

    # bundles
    def post_bundle(self, bundle_id: str, item_ids: Sequence[str], *, overwrite: bool = False) -> BundleOut:
        """A new bundle from its member items."""
        body = {"bundle_id": bundle_id, "item_ids": list(item_ids), "overwrite": overwrite}
        return self._send(Call("POST", "/v1/bundles", BundleOut, json=body, resend=False))

    def bundle_embedding(self, bundle_id: str) -> BundleEmbeddingOut:
        return self._send(Call("GET", f"/v1/bundles/{segment(bundle_id)}/embedding", BundleEmbeddingOut))

    def rank_bundles(
        self,
        bundle_ids: Sequence[str],
        *,
        user_id: str | None = None,
        user_embedding: Sequence[float] | None = None,
        id_space: str | None = None,
    ) -> BundleRankOut:
        body = user_body(user_id, user_embedding, id_space) | {"bundle_ids": list(bundle_ids)}
        return self._send(Call("POST", "/v1/bundles/rank", BundleRankOut, json=body))

    def recommend_bundles(
        self,
        *,
        user_id: str | None = None,
        user_embedding: Sequence[float] | None = None,
        k: int = 10,
        exclude_seen: bool = True,
        only: Literal["new", "warm", "all"] = "all",
        created_after: datetime | float | None = None,
        exclude_ids: Sequence[str] = (),
        id_space: str | None = None,
    ) -> BundleRecommendOut:
        body = (
            user_body(user_id, user_embedding, id_space)
            | {"k": k}
            | filters_body(exclude_seen, only, created_after, exclude_ids)
        )
        return self._send(Call("POST", "/v1/bundles/recommendations", BundleRecommendOut, json=body))

    def delete_bundle(self, bundle_id: str) -> None:
        return self._send(Call("DELETE", f"/v1/bundles/{segment(bundle_id)}", None, resend=False))

    def restore_bundle(self, bundle_id: str) -> None:
        return self._send(Call("POST", f"/v1/bundles/{segment(bundle_id)}/restore", None))

    # the deployment
    def model(self) -> ModelOut:
        """The package served: versions, dimensions, ID space, test metrics, rollout."""
        return self._send(Call("GET", "/v1/model", ModelOut))

    def reload(self) -> ReloadOut:
        """Load the package directory again (an admin key)."""
        return self._send(Call("POST", "/v1/admin/reload", ReloadOut, resend=False))

    def promote(self) -> ReloadOut:
        """Serve the candidate package to every user (an admin key)."""
        return self._send(Call("POST", "/v1/admin/promote", ReloadOut, resend=False))
