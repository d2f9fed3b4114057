"""The HTTP API's request and response models (v1): the service validates and answers with them, and
``coldproxy.client`` returns them typed, so the protocol is written once."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated, Literal

from pydantic import BaseModel, Field, model_validator

from coldproxy.ids import ID_PATTERN
from coldproxy.limits import MAX_BATCH, MAX_DIM, MAX_EXCLUDE, MAX_HISTORY, MAX_LIST


def versions(version: str, old: str = "bundle_version") -> dict[str, str]:
    """An answer's version keys: ``package_version``, and its old name (item answers' ``bundle_version``, bundle
    answers' ``model_version``), the same value, kept for one release."""
    return {"package_version": version, old: version}


def both_names(data, old: str):
    """A body that names the version either way (an older service's answer) gets both names."""
    if isinstance(data, dict) and ("package_version" in data or old in data):
        data = data | versions(data.get("package_version") or data[old], old)
    return data


class Versioned(BaseModel):
    """An answer from the item model package: its version is ``package_version`` ("bundle" names product bundles
    only); ``bundle_version``, the same value under the old name, is deprecated and goes in the next release."""

    package_version: str = Field(description="the model package's version")
    bundle_version: str | None = Field(
        None,
        deprecated="use package_version; bundle_version goes in the next release",
        description="deprecated: the same as package_version",
    )

    @model_validator(mode="before")
    @classmethod
    def _both_names(cls, data):
        return both_names(data, "bundle_version")


class ItemJSON(BaseModel):
    item_id: str = Field(pattern=ID_PATTERN)
    text: str | None = None
    image_base64: str | None = Field(None, description="the image file's bytes, base64-encoded")
    overwrite: bool = False


class ItemOut(Versioned):
    item_id: str
    source: str = Field(description="'proxy' (computed from content)")
    modalities: list[str]
    fusion_weights: dict[str, float] = Field(
        description="the generator's adaptive fusion weights; 0 for a missing modality"
    )
    expert_weights: dict[str, float] | None = Field(
        None,
        description="cold-aware gate weights over the experts (id, proxy, diffusion), when the model package has them",
    )
    interactions: int | None = Field(None, description="interaction count the gate used (after POST .../interactions)")
    embedding: list[float]


class InteractionsIn(BaseModel):
    count: int = Field(ge=0, le=10**9, description="interactions the item has had so far")
    id_embedding: list[float] | None = Field(
        None, max_length=MAX_DIM, description="the item's ID embedding in your recommender, if it has one yet"
    )


class UserInteractionsIn(BaseModel):
    item_ids: list[Annotated[str, Field(max_length=128)]] = Field(
        min_length=1,
        max_length=MAX_HISTORY,
        description="items the user has seen or interacted with, oldest first (at most COLDPROXY_USER_HISTORY)",
    )


class UserInteractionsOut(BaseModel):
    user_id: str
    kept: int = Field(description="items now kept for the user (the newest COLDPROXY_USER_HISTORY)")


class ItemsBatchIn(BaseModel):
    items: list[ItemJSON] = Field(min_length=1, max_length=MAX_BATCH)


class BatchResult(BaseModel):
    item_id: str
    status: int = Field(description="200 stored; else the status POST /v1/items would have answered for this item")
    detail: str | list | None = None
    item: ItemOut | None = None


class BatchOut(Versioned):
    stored: int
    results: list[BatchResult]


class IdVector(BaseModel):
    item_id: str = Field(pattern=ID_PATTERN)
    embedding: list[float] = Field(
        min_length=1, max_length=MAX_DIM, description="the recommender's vector for the item"
    )


class IdVectorsIn(BaseModel):
    items: list[IdVector] = Field(min_length=1, max_length=MAX_LIST, description="at most COLDPROXY_MAX_ID_VECTORS")
    id_space: str | None = Field(
        None,
        max_length=64,
        description="the ID space fingerprint these vectors are of "
        "(GET /v1/model); 409 and nothing stored when the service serves another",
    )
    add_unknown: bool = Field(
        False,
        description="add items the service does not know (neither warm nor stored); "
        "off, such an item fails alone with 404",
    )


class IdVectorResult(BaseModel):
    item_id: str
    status: int = Field(
        description="200 stored or unchanged; 422 for a vector refused (dimension, values, norm); "
        "404 for an item the service does not know, unless add_unknown"
    )
    outcome: str | None = Field(
        None,
        description="updated (a warm or earlier-synced item's vector replaced), added "
        "(an item the service did not know), graduated (a new item now served its ID vector "
        "instead of its proxy), unchanged (the same vector was already served)",
    )
    detail: str | list | None = None


class IdVectorsOut(Versioned):
    id_fingerprint: str = Field(description="the ID space the vectors were stored into")
    stored: int
    unchanged: int
    failed: int
    results: list[IdVectorResult]


class EmbeddingOut(Versioned):
    item_id: str
    source: str = Field(description="'id' for a warm item of the ID model, 'proxy' for a cold item")
    embedding: list[float]


class UserQuery(BaseModel):
    """Whom a ranking is for: a user of the model package, or a user vector of its ID space -- exactly one."""

    user_id: str | None = Field(None, min_length=1, max_length=128, description="a user the model package knows")
    user_embedding: list[float] | None = Field(
        None,
        max_length=MAX_DIM,
        description="a user vector of the package's ID space (your recommender's user "
        "tower, a new sign-up): the package's dimension, finite, norm within COLDPROXY_MAX_USER_NORM (default: "
        "1.5x the largest of the package's users); unit-length in a cosine space",
    )
    id_space: str | None = Field(
        None,
        max_length=64,
        description="the ID space fingerprint your user_embedding "
        "belongs to (GET /v1/model: id_fingerprint); 409 when the service serves another",
    )

    @model_validator(mode="after")
    def _exactly_one(self):
        if (self.user_id is None) == (self.user_embedding is None):
            raise ValueError("give exactly one of user_id and user_embedding")
        return self


class RankIn(UserQuery):
    item_ids: list[str] = Field(min_length=1, max_length=MAX_LIST, description="at most COLDPROXY_MAX_CANDIDATES")


class RecommendFilters(BaseModel):
    """What a recommendation leaves out (items and bundles alike)."""

    exclude_seen: bool = Field(
        True,
        description="for a user_id: leave out every item the user interacted with in "
        "the package's data -- positives and seen-only ones (a rating below the threshold, a "
        "weight <= 0) -- and those posted as seen since (a package exported before they were "
        "kept has none)",
    )
    only: Literal["new", "warm", "all"] = Field(
        "all",
        description="new: only those served by a proxy -- posted (or "
        "added) since the package, and the package's items without an ID "
        "vector -- a cold-start exploration slot; warm: only those served by "
        "the package's ID vectors; all",
    )
    created_after: datetime | None = Field(
        None,
        description="only those first stored after this time (ISO 8601, UTC "
        "when no zone is given, or epoch seconds); the package's own have no such "
        "time and are left out",
    )

    @property
    def after(self) -> float | None:
        """``created_after`` as epoch seconds."""
        t = self.created_after
        if t is None:
            return None
        return (t if t.tzinfo is not None else t.replace(tzinfo=timezone.utc)).timestamp()


class RecommendBody(UserQuery, RecommendFilters):
    """A recommendation request's body: the filters of the GET's query, and a list of IDs to leave out."""

    exclude_ids: list[Annotated[str, Field(max_length=128)]] = Field(
        default_factory=list, max_length=MAX_EXCLUDE, description="IDs to leave out (what the client already shows)"
    )


class RecommendIn(RecommendBody):
    k: int = Field(10, ge=1, description="how many items (at most COLDPROXY_MAX_K)")


class Scored(BaseModel):
    item_id: str
    score: float
    source: str | None = None


class RankOut(Versioned):
    user_id: str | None = Field(description="null when ranked for a user_embedding")
    scores: list[Scored]
    missing: list[str] = Field(description="candidate IDs with no embedding (unknown or not yet ingested)")


class RecommendOut(Versioned):
    user_id: str | None = Field(description="null when ranked for a user_embedding")
    items: list[Scored]


class ModelOut(Versioned):
    created_at: str
    dims: dict[str, int]
    encoders: dict[str, str]
    counts: dict[str, int] = Field(
        description="users; warm_items: items served by their ID vector; proxy_items: the "
        "package's other catalogue items, served by their proxy"
    )
    cold_items_indexed: int = Field(description="new items posted since the package, indexed on this replica")
    providers: list[str]
    evaluation: dict | None = Field(
        None,
        description="the evaluation that chose every setting of this package: its "
        "split, choices (epochs, weights, sampler, served expert, calibration), validation "
        "scores and test metrics (which decide nothing)",
    )
    served: dict | None = Field(
        None,
        description="what the served tables were fit on: refit (true: all the data, "
        "with the evaluation's choices; false: the evaluation split's training part), "
        "training interactions, users, items by ID vector and by proxy",
    )
    refit: dict | None = Field(
        None,
        description="a refit on all the data training in the background (coldproxy up): "
        "state (training or failed), expected_in_s; null when none is",
    )
    test_metrics: dict = Field(description="the evaluation's test metrics (also under evaluation.test)")
    calibration: dict | None = Field(
        None,
        description="the package's calibration of new items to the warm items' score scale (scale, shift), "
        "chosen on validation; null when it has none",
    )
    cold_boost: float = Field(0.0, description="COLDPROXY_COLD_BOOST: extra exposure for new items (0: none)")
    selection: dict | None = Field(
        None,
        description="what a new item is served (served: the gate's mix or one expert; generator: the fused or a "
        "single-modality generator), chosen on validation, with every candidate's validation-cold NDCG@20 and, in "
        "margins, each costlier candidate's mean gain over the choice before it and the floor it had to clear",
    )
    warnings: list[str] = Field(
        default_factory=list,
        description="what training found wrong with this package, e.g. an "
        "ID model no better than popularity on warm validation",
    )
    bundle_recommender: dict | None = Field(
        None,
        description="the bundle recommender package served under /v1/bundles: package_version (version, the "
        "old name, is deprecated and goes in the next release), scenario, counts, cold bundles "
        "indexed, test metrics and the protocol they were measured under; null when there is none",
    )
    id_fingerprint: str = Field(
        "",
        description="identifies the recommender's ID space (its ID tables); vectors of "
        "packages with different fingerprints are never mixed",
    )
    id_space: dict | None = Field(
        None,
        description="the ID space served: source (trained by coldproxy, or given: "
        "your recommender's vectors), score function (dot or cosine), dimension, the given "
        "files' names and row counts, fingerprint",
    )
    encoder_fingerprint: str = Field(
        "",
        description="identifies the encoders: a package with the same one re-embeds "
        "the stored items from their kept content features",
    )
    rollout: RolloutOut | None = Field(None, description="a package being rolled out or run in shadow beside this one")


class RolloutOut(BaseModel):
    version: str = Field(description="the package being rolled out")
    state: str = Field(
        description="backfilling, switched, shadow (kept beside the serving one, for canary users only) or failed"
    )
    error: str | None = None
    backfill: dict = Field(
        description="stored items: total, reembedded, present (already there), graduated (warm "
        "in the new package), no_features, failed, covered (share), items_per_s"
    )


class ReloadOut(Versioned):
    """``package_version``: the version serving now."""

    previous_version: str
    changed: bool = Field(
        description="False when the model package directory still holds the serving version, or "
        "while its rollout is still backfilling (then answered with 202)"
    )
    rollout: RolloutOut | None = Field(
        None,
        description="the stored items' re-embedding for the new package; null "
        "when it was switched to at once (different encoders)",
    )
