"""Typed request and response models of the HTTP API (v1)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, Field

from coldproxy.ids import ID_PATTERN


class ItemJSON(BaseModel):
    item_id: str = Field(pattern=ID_PATTERN)
    text: str | None = None
    image_base64: str | None = Field(None, description="the image file's bytes, base64-encoded")
    overwrite: bool = False


class ItemOut(BaseModel):
    item_id: str
    bundle_version: str
    source: str = Field(description="'proxy' (computed from content)")
    modalities: list[str]
    fusion_weights: dict[str, float] = Field(description="the generator's adaptive fusion weights; 0 for a missing modality")
    expert_weights: dict[str, float] | None = Field(
        None, description="cold-aware gate weights over the experts (id, proxy, diffusion), when the model package has them")
    interactions: int | None = Field(None, description="interaction count the gate used (after POST .../interactions)")
    embedding: list[float]


class InteractionsIn(BaseModel):
    count: int = Field(ge=0, le=10**9, description="interactions the item has had so far")
    id_embedding: list[float] | None = Field(None, description="the item's ID embedding in your recommender, if it has one yet")


class ItemsBatchIn(BaseModel):
    items: list[ItemJSON] = Field(min_length=1)


class BatchResult(BaseModel):
    item_id: str
    status: int = Field(description="200 stored; else the status POST /v1/items would have answered for this item")
    detail: str | list | None = None
    item: ItemOut | None = None


class BatchOut(BaseModel):
    bundle_version: str
    stored: int
    results: list[BatchResult]


class EmbeddingOut(BaseModel):
    item_id: str
    bundle_version: str
    source: str = Field(description="'id' for a warm item of the ID model, 'proxy' for a cold item")
    embedding: list[float]


class RankIn(BaseModel):
    user_id: str = Field(min_length=1, max_length=128)
    item_ids: list[str] = Field(min_length=1)


class Scored(BaseModel):
    item_id: str
    score: float
    source: str | None = None


class RankOut(BaseModel):
    user_id: str
    bundle_version: str
    scores: list[Scored]
    missing: list[str] = Field(description="candidate IDs with no embedding (unknown or not yet ingested)")


class RecommendOut(BaseModel):
    user_id: str
    bundle_version: str
    items: list[Scored]


class ModelOut(BaseModel):
    bundle_version: str
    created_at: str
    dims: dict[str, int]
    encoders: dict[str, str]
    counts: dict[str, int]
    cold_items_indexed: int
    providers: list[str]
    test_metrics: dict
    calibration: dict | None = Field(
        None, description="the package's calibration of new items to the warm items' score scale (scale, shift), "
                          "chosen on validation; null when it has none")
    cold_boost: float = Field(0.0, description="COLDPROXY_COLD_BOOST: extra exposure for new items (0: none)")
    selection: dict | None = Field(
        None, description="what a new item is served (served: the gate's mix or one expert; generator: the fused or a "
        "single-modality generator), chosen on validation, with every candidate's validation-cold NDCG@20")
    warnings: list[str] = Field(default_factory=list, description="what training found wrong with this package, e.g. an "
                                "ID model no better than popularity on warm validation")
    bundle_recommender: dict | None = Field(
        None, description="the bundle recommender package served under /v1/bundles: version, scenario, counts, "
                          "cold bundles indexed, test metrics; null when there is none")
    id_fingerprint: str = Field("", description="identifies the recommender's ID space (its ID tables); vectors of "
                                "packages with different fingerprints are never mixed")
    encoder_fingerprint: str = Field("", description="identifies the encoders: a package with the same one re-embeds "
                                     "the stored items from their kept content features")
    rollout: RolloutOut | None = Field(None, description="a package being rolled out or run in shadow beside this one")


class RolloutOut(BaseModel):
    version: str = Field(description="the package being rolled out")
    state: str = Field(description="backfilling, switched, shadow (kept beside the serving one, for canary users "
                                   "only) or failed")
    error: str | None = None
    backfill: dict = Field(description="stored items: total, reembedded, present (already there), graduated (warm "
                                       "in the new package), no_features, failed, covered (share), items_per_s")


class ReloadOut(BaseModel):
    previous_version: str
    bundle_version: str = Field(description="the version serving now")
    changed: bool = Field(description="False when the model package directory still holds the serving version, or "
                                      "while its rollout is still backfilling (then answered with 202)")
    rollout: RolloutOut | None = Field(None, description="the stored items' re-embedding for the new package; null "
                                                          "when it was switched to at once (different encoders)")


class BundleIn(BaseModel):
    bundle_id: str = Field(pattern=ID_PATTERN)
    item_ids: list[Annotated[str, Field(pattern=ID_PATTERN)]] = Field(
        min_length=1, description="member item IDs of the bundle recommender's catalogue, with or without interactions; "
                                  "repeats count once")
    overwrite: bool = False


class BundleOut(BaseModel):
    bundle_id: str
    model_version: str = Field(description="the bundle recommender package's version")
    source: str = Field(description="'proxy' (computed from the members)")
    members: int = Field(description="distinct member items")
    view_weights: dict[str, float] = Field(description="output-layer gate: weight of the bundle-level and item-level view")
    expert_weights: dict[str, dict[str, float]] = Field(
        description="per view, the view-layer gate's weights over the prior and the diffusion expert")
    embedding: list[float]


class BundleEmbeddingOut(BaseModel):
    bundle_id: str
    model_version: str
    source: str = Field(description="'id' for a bundle the model was trained with, 'proxy' for one posted since")
    embedding: list[float]


class BundleRankIn(BaseModel):
    user_id: str = Field(min_length=1, max_length=128)
    bundle_ids: list[str] = Field(min_length=1)


class ScoredBundle(BaseModel):
    bundle_id: str
    score: float
    source: str | None = None


class BundleRankOut(BaseModel):
    user_id: str
    model_version: str
    scores: list[ScoredBundle]
    missing: list[str] = Field(description="candidate bundle IDs with no embedding (unknown or not yet posted)")


class BundleRecommendOut(BaseModel):
    user_id: str
    model_version: str
    bundles: list[ScoredBundle]
