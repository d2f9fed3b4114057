"""The HTTP API's bundle models (v1, ``/v1/bundles``): the answers of the bundle model package, which name its version
``package_version`` (``model_version`` is the deprecated old name), and the bundle requests."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, Field, model_validator

from coldproxy.ids import ID_PATTERN
from coldproxy.limits import MAX_LIST
from coldproxy.protocol import RecommendBody, UserQuery, both_names, versions


def bundle_versions(version: str) -> dict[str, str]:
    return versions(version, "model_version")


class BundleVersioned(BaseModel):
    """An answer from the bundle model package: ``package_version``; ``model_version`` is its deprecated old name."""

    package_version: str = Field(description="the bundle model package's version")
    model_version: str | None = Field(
        None,
        deprecated="use package_version; model_version goes in the next release",
        description="deprecated: the same as package_version",
    )

    @model_validator(mode="before")
    @classmethod
    def _both_names(cls, data):
        return both_names(data, "model_version")


class BundleIn(BaseModel):
    bundle_id: str = Field(pattern=ID_PATTERN)
    item_ids: list[Annotated[str, Field(pattern=ID_PATTERN)]] = Field(
        min_length=1,
        max_length=MAX_LIST,
        description="member item IDs of the bundle recommender's catalogue, with or without interactions; "
        "repeats count once",
    )
    overwrite: bool = False


class BundleOut(BundleVersioned):
    bundle_id: str
    source: str = Field(description="'proxy' (computed from the members)")
    members: int = Field(description="distinct member items")
    view_weights: dict[str, float] = Field(
        description="output-layer gate: weight of the bundle-level and item-level view"
    )
    expert_weights: dict[str, dict[str, float]] = Field(
        description="per view, the view-layer gate's weights over the prior and the diffusion expert"
    )
    embedding: list[float]


class BundleEmbeddingOut(BundleVersioned):
    bundle_id: str
    source: str = Field(description="'id' for a bundle the model was trained with, 'proxy' for one posted since")
    embedding: list[float]


class BundleRankIn(UserQuery):
    bundle_ids: list[str] = Field(min_length=1, max_length=MAX_LIST, description="at most COLDPROXY_MAX_CANDIDATES")


class BundleRecommendIn(RecommendBody):
    k: int = Field(10, ge=1, description="how many bundles (at most COLDPROXY_MAX_K)")


class ScoredBundle(BaseModel):
    bundle_id: str
    score: float
    source: str | None = None


class BundleRankOut(BundleVersioned):
    user_id: str | None
    scores: list[ScoredBundle]
    missing: list[str] = Field(description="candidate bundle IDs with no embedding (unknown or not yet posted)")


class BundleRecommendOut(BundleVersioned):
    user_id: str | None
    bundles: list[ScoredBundle]
