"""The bundle recommender package (MoDiffE on bundles): its schema, its loader, and the numpy + ONNX
Runtime computation of a new bundle's vector from its member items. No torch: the service and the
export's parity check both use this, so what is served is what was checked.

A bundle here is a list of items -- a book list, a playlist, an outfit -- that users interact with as one thing;
the item model's package is ``coldproxy.package``'s.

Package layout: ``bundle_sampler.onnx`` (B-view diffusion expert, DPM-Solver++ steps unrolled),
``bundle_gate.onnx`` (view gates + output gate), ``embeddings.npz`` and ``manifest.json``.

A new bundle B with member items M, no interactions yet:

* item view: prior r_B^I = mean of the members' item-view embeddings; diffusion = mean of the
  members' item-level diffusion vectors (precomputed for every catalogue item at export);
* bundle view: condition c = [mean composition embedding of M ; r_B^I]; anchor = mean bundle-view
  embedding of the ``anchor_n`` warm bundles nearest by c; diffusion = sampler(anchor, c); no prior
  (the gate masks it: the bundle has no interactions);
* cold-aware features: log(1 + 0) for the bundle; fraction of members with user interactions and
  their mean log(1 + count) for the items;
* served vector [g_B·r_B ; g_I·r_I] from the gate, then the cold calibration (``ColdCalibration``,
  chosen on the tune split at training): the bundle view scaled by c_B (its source the gate's B view or
  the anchor itself), the item view by c_I, then two components: α·log(|M|) + β, the size prior, and 1,
  the placement; scored against user vectors [u_B ; u_I ; 1 ; t_u]. t_u, the user's placement offset
  (chosen at training on the tune split, 0 when off), aligns the user's k-th best new bundle with their
  (20 - k)-th best warm one, so every user's top 20 holds about k new bundles whatever the scales of
  their scores. Bundles with interactions are served as trained, last two components 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel

from coldproxy.anchors import AnchorIndex, unit_rows
from coldproxy.errors import PackageError
from coldproxy.graph_io import BUNDLE_GATE_INPUTS, BUNDLE_GATE_OUTPUTS, SAMPLER_INPUTS
from coldproxy.ort import make_session
from coldproxy.package import read_manifest, seen_of, verify_files

SCHEMA_VERSION = 3  # 2: the cold calibration and its size-prior component; 3: the per-user placement component
FILES = {"sampler": "bundle_sampler.onnx", "gate": "bundle_gate.onnx", "embeddings": "embeddings.npz"}
VIEWS = ("bundle", "item")
VIEW_EXPERTS = ("prior", "diffusion")
B_FEATURES = ("log1p_bundle_count",)
I_FEATURES = ("warm_item_fraction", "mean_log1p_item_count")
ARRAYS = (
    "user_ids",
    "user_emb",
    "item_ids",
    "item_prior",
    "item_diffusion",
    "item_composition",
    "item_counts",
    "bundle_ids",
    "bundle_emb",
    "bundle_condition",
    "bundle_prior",
)


class ColdCalibration(BaseModel):
    """How a bundle without interactions is served beside the others (MoDiffE's cold bundles carry no
    popularity, and their gate-bounded view vectors sit on another scale than warm ones): per view a
    scale, the bundle view's source, and a size prior α·log(members) + β in one extra component that
    user vectors meet with a 1 (β, the offset, places new bundles against warm ones in a mixed ranking),
    then a component 1 that user vectors meet with their placement offset t_u (``cold_slots`` k: t_u
    aligns the user's k-th best new bundle with their (``list_length`` - k)-th best warm one; 0: off).
    The identity (gate, 1, 1, 0, 0, 0) serves the gate's vectors unchanged."""

    bundle_source: Literal["gate", "anchor"] = "gate"  # anchor: the similarity anchor without denoising
    bundle_view: float = 1.0
    item_view: float = 1.0
    log_size: float = 0.0
    offset: float = 0.0
    cold_slots: int = 0  # the per-user placement's k; the offsets t_u are the users' last component
    list_length: int = 20

    def cold(self, gated: np.ndarray, anchor: np.ndarray, sizes: np.ndarray) -> np.ndarray:
        """Served vectors [n, 2·dim + 2] of bundles without interactions from the gate's [n, 2·dim], their
        B-view anchors [n, dim] and member counts [n]."""
        d = anchor.shape[1]
        b = anchor if self.bundle_source == "anchor" else gated[:, :d]
        bias = self.log_size * np.log(np.maximum(sizes, 1)) + self.offset
        return with_columns(np.concatenate([self.bundle_view * b, self.item_view * gated[:, d:]], 1), bias, 1.0)


def with_columns(vectors: np.ndarray, size_prior, placement) -> np.ndarray:
    """[n, 2·dim] -> [n, 2·dim + 2], the served layout: the size-prior and placement components, each a
    scalar or one value per row. Warm bundles (0, 0), new ones (α·log|b| + β, 1), users (1, t_u)."""
    n = len(vectors)
    extra = [np.broadcast_to(np.asarray(c, np.float32), (n,))[:, None] for c in (size_prior, placement)]
    return np.concatenate([vectors, *extra], 1).astype(np.float32)


class BundlePackageManifest(BaseModel):
    schema_version: int = SCHEMA_VERSION
    version: str
    created_at: str
    dim: int  # per view; served vectors have ``served_dim``
    scenario: str
    anchor_n: int
    item_pooling: float = 1.0  # the item view's bundle: its items' sum over members^p (1: the mean)
    calibration: ColdCalibration
    sampler: dict
    files: dict[str, str]  # component -> sha256
    parity: dict[str, float]
    metrics: dict
    provenance: dict
    counts: dict[str, int]

    @property
    def served_dim(self) -> int:
        """Width of served user and bundle vectors: both views, then the size prior and the placement."""
        return 2 * self.dim + 2


def bundle_condition(members_mean, comp_items: np.ndarray, item_prior: np.ndarray) -> np.ndarray:
    """B-view condition [n, 2·dim]: the members' mean composition and mean item-view embeddings.
    ``members_mean``: the [n, n_items] row-normalised membership (dense or sparse, anything with ``@``)."""
    return np.concatenate([members_mean @ comp_items, members_mean @ item_prior], axis=1).astype(np.float32)


@dataclass
class BundlePackage:
    path: Path
    manifest: BundlePackageManifest
    arrays: dict[str, np.ndarray]
    # users' training bundles as rows of bundle_ids (CSR); None: not kept
    seen: tuple[np.ndarray, np.ndarray] | None = None

    @property
    def version(self) -> str:
        return self.manifest.version

    def file(self, component: str) -> Path:
        return self.path / FILES[component]


def load_bundle_package(path: Path) -> BundlePackage:
    """Read and verify a package (hashes, dims, row counts); PackageError on any mismatch."""
    path = Path(path)
    m = read_manifest(path, BundlePackageManifest, SCHEMA_VERSION, "bundle recommender", "coldproxy train-bundles")
    verify_files(path, FILES, m.files)
    with np.load(path / FILES["embeddings"]) as z:
        missing = set(ARRAYS) - set(z.files)
        if missing:
            raise PackageError(f"embeddings.npz lacks {sorted(missing)}")
        a = {k: z[k] for k in ARRAYS}
        seen = seen_of(z, len(a["user_ids"]), len(a["bundle_ids"]))
    for k in ARRAYS:
        if a[k].dtype.kind == "f":
            a[k] = a[k].astype(np.float32)
    d = m.dim
    shapes = {
        "user_emb": (len(a["user_ids"]), m.served_dim),
        "item_prior": (len(a["item_ids"]), d),
        "item_diffusion": (len(a["item_ids"]), d),
        "item_composition": (len(a["item_ids"]), d),
        "item_counts": (len(a["item_ids"]),),
        "bundle_emb": (len(a["bundle_ids"]), m.served_dim),
        "bundle_condition": (len(a["bundle_ids"]), 2 * d),
        "bundle_prior": (len(a["bundle_ids"]), d),
    }
    for k, shape in shapes.items():
        if a[k].shape != shape:
            raise PackageError(f"embeddings.npz: {k} is {a[k].shape}, the manifest and id lists say {shape}")
    return BundlePackage(path, m, a, seen)


@dataclass
class BundleVectors:
    """Per bundle: served vector [n, 2·dim + 2]; view weights [n, 2] (bundle, item); each view's expert
    weights [n, 2] (prior, diffusion)."""

    embedding: np.ndarray
    view_weights: np.ndarray
    bundle_view_weights: np.ndarray
    item_view_weights: np.ndarray


class BundleEmbedder:
    """New bundles' vectors from their members through the package's two ONNX graphs."""

    def __init__(self, rec: BundlePackage, ort: dict | None = None):
        """``ort``: ``coldproxy.ort.make_session`` options."""
        a, self.dim = rec.arrays, rec.manifest.dim
        self.item_prior, self.item_diffusion, self.item_comp = (
            a["item_prior"],
            a["item_diffusion"],
            a["item_composition"],
        )
        self.log_counts = np.log1p(a["item_counts"].astype(np.float32))
        self.clicked = (a["item_counts"] > 0).astype(np.float32)
        self.anchors = AnchorIndex(unit_rows(a["bundle_condition"]), a["bundle_prior"], rec.manifest.anchor_n)
        self.sampler = make_session(rec.file("sampler"), **(ort or {}))
        self.gate = make_session(rec.file("gate"), **(ort or {}))
        self.calibration = rec.manifest.calibration
        self.pooling = rec.manifest.item_pooling
        self.providers = self.sampler.get_providers()

    def embed(self, members: list[np.ndarray]) -> BundleVectors:
        """``members``: per bundle, the row indices of its (distinct, non-empty) member items."""
        mean = lambda x: np.stack([x[m].mean(0) for m in members]).astype(np.float32)  # noqa: E731
        p = self.pooling
        pool = lambda x: np.stack([x[m].sum(0) / len(m) ** p for m in members]).astype(np.float32)  # noqa: E731
        cond = np.concatenate([mean(self.item_comp), mean(self.item_prior)], axis=1)  # the condition: the mean
        item_prior, item_diff = pool(self.item_prior), pool(self.item_diffusion)
        anchor = self.anchors.anchors(unit_rows(cond))
        diffusion = self.sampler.run(None, dict(zip(SAMPLER_INPUTS, (anchor, cond))))[0]
        n = len(members)
        feeds = dict(
            zip(
                BUNDLE_GATE_INPUTS,
                (
                    np.zeros((n, len(B_FEATURES)), np.float32),  # bundle features: a new bundle has no interactions
                    np.stack(
                        [mean(self.clicked[:, None])[:, 0], mean(self.log_counts[:, None])[:, 0]], 1
                    ),  # item features
                    np.zeros((n, self.dim), np.float32),  # bundle-view prior: masked out by the gate for count 0
                    diffusion,
                    item_prior,
                    item_diff,
                ),
            )
        )
        gated, *weights = self.gate.run(BUNDLE_GATE_OUTPUTS, feeds)
        sizes = np.array([len(m) for m in members])
        return BundleVectors(self.calibration.cold(gated, anchor, sizes), *weights)
