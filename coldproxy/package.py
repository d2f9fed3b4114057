"""The model package: one directory, one schema, written by ``export`` and read by ``service``.

Layout: ``text_encoder.onnx``, ``image_encoder.onnx``, ``proxy.onnx``, ``tokenizer.json``,
``embeddings.npz`` (user_ids, user_emb, item_ids, item_emb, warm items' content features; proxy_item_ids and
proxy_item_emb, the proxies of every other catalogue item, served like new items; each user's interactions) and
``manifest.json`` (this schema); with the diffusion expert also ``sampler.onnx`` and ``gate.onnx``
(``manifest.experts`` says how they were built). Loading verifies every file's sha256 and the dimensions, and
refuses the package on any mismatch. The HTTP API names its version ``package_version`` (``bundle_version``, the
old name, is deprecated); "bundle" everywhere else means a group of items.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, Field

from coldproxy.errors import PackageError

MANIFEST = "manifest.json"
SCHEMA_VERSION = 3  # 2: multi-layer encoder outputs, fusion weights; 3: optional diffusion sampler + gate
COMPONENTS = {
    "text_encoder": "text_encoder.onnx",
    "image_encoder": "image_encoder.onnx",
    "proxy": "proxy.onnx",
    "tokenizer": "tokenizer.json",
    "embeddings": "embeddings.npz",
}
EXPERT_COMPONENTS = {"sampler": "sampler.onnx", "gate": "gate.onnx"}  # present when manifest.experts is set


class Dims(BaseModel):
    id_dim: int
    text_dim: int
    image_dim: int
    text_layers: int
    image_stage_dim: int


class IdSpace(BaseModel):
    """The ID space a package serves: trained by coldproxy, or given as the team's own vectors
    (``coldproxy.id_space``)."""

    fingerprint: str = Field(description="identifies the space; packages with another one serve another space")
    source: Literal["trained", "given"]
    score: Literal["dot", "cosine"] = Field(
        "dot",
        description="how the recommender scores a user against an item; "
        "a cosine space's vectors are kept unit-length, so an inner product is it",
    )
    dim: int
    item_file: str | None = Field(None, description="the given item vectors' file name")
    user_file: str | None = Field(None, description="the given user vectors' file name; none: items only")
    item_vectors: int = Field(0, description="rows of the item file (trained: warm items)")
    user_vectors: int = Field(0, description="rows of the user file (trained: users)")


class Manifest(BaseModel):
    schema_version: int = SCHEMA_VERSION
    version: str
    created_at: str
    dims: Dims
    encoders: dict[str, str]
    preprocessing: dict
    files: dict[str, str]  # component -> sha256
    parity: dict[str, float]
    metrics: dict
    provenance: dict
    counts: dict[str, int]
    experts: dict | None = None  # sampler (method, steps, spacing, t_start), anchor_n, gate features/experts
    id_fingerprint: str | None = None  # ``id_fingerprint`` of the ID tables; verified at load when set
    id_space: IdSpace | None = None  # where the ID space comes from; older packages: a trained one
    # the evaluation that chose every setting: its split, choices, validation scores and test metrics (the test split's
    # numbers decide nothing); older packages keep them in ``metrics``
    evaluation: dict | None = None
    # what the served tables were fit on: the evaluation split's training part, or (``refit``) all the data
    served: dict | None = None

    def evaluated(self, key: str, default=None):
        """``key`` of the evaluation (``test``, ``selection``, ``calibration``, ...), wherever this package keeps it."""
        return (self.evaluation or {}).get(key, self.metrics.get(key, default))


def id_fingerprint(user_ids, user_emb: np.ndarray, item_ids, item_emb: np.ndarray) -> str:
    """Identifies the recommender's ID space: a digest of its user and item ID tables. Two packages with
    the same fingerprint serve vectors of the same space; with different ones, never mix their vectors."""
    h = hashlib.sha256()
    for ids, emb in ((user_ids, user_emb), (item_ids, item_emb)):
        h.update("\n".join(map(str, ids)).encode())
        h.update(np.ascontiguousarray(emb, dtype=np.float32).tobytes())
    return h.hexdigest()[:16]


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def verify_files(path: Path, expected: dict[str, str], hashes: dict[str, str]) -> None:
    """Every component file exists and has the sha256 its manifest records; PackageError otherwise."""
    for comp, name in expected.items():
        f = path / name
        if not f.exists():
            raise PackageError(f"{path} is missing {name}")
        want = hashes.get(comp)
        if want is None or sha256_file(f) != want:
            raise PackageError(f"{name}: sha256 does not match the manifest")


@dataclass
class ModelPackage:
    path: Path
    manifest: Manifest
    user_ids: list[str]
    user_emb: np.ndarray
    item_ids: list[str]
    item_emb: np.ndarray
    # each user's interactions, as rows of ``item_ids`` then ``proxy_ids`` (CSR: user u's are
    # items[indptr[u]:indptr[u + 1]]); None for a package from before they were kept
    seen: tuple[np.ndarray, np.ndarray] | None = None
    # the catalogue items without an ID vector (held out, without a positive, without a given vector), served by
    # their proxy; none in a package from before they were kept
    proxy_ids: list[str] = field(default_factory=list)
    proxy_emb: np.ndarray | None = None

    @property
    def has_experts(self) -> bool:
        return self.manifest.experts is not None

    def file(self, component: str) -> Path:
        return self.path / (COMPONENTS | EXPERT_COMPONENTS)[component]

    @cached_property
    def id_fingerprint(self) -> str:
        """The ID space's fingerprint: the given space's (``coldproxy.id_space.space_fingerprint``), else a digest of
        the trained ID tables."""
        space = self.manifest.id_space
        if space is not None and space.source == "given":
            return space.fingerprint
        return id_fingerprint(self.user_ids, self.user_emb, self.item_ids, self.item_emb)

    @property
    def score(self) -> str:
        """The space's score function: "dot" or "cosine" (whose vectors are unit-length)."""
        return self.manifest.id_space.score if self.manifest.id_space is not None else "dot"

    @cached_property
    def encoder_fingerprint(self) -> str:
        """Identifies the encoders and their preprocessing: packages that share it compute the same content
        features for an item, so one's stored features feed the other's graphs."""
        m = self.manifest
        blob = json.dumps(
            {
                "files": [m.files[c] for c in ("text_encoder", "image_encoder", "tokenizer")],
                "preprocessing": m.preprocessing,
                "dims": m.dims.model_dump(),
            },
            sort_keys=True,
            default=str,
        )
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def read_manifest(path: Path, model: type[BaseModel], schema_version: int, what: str, command: str):
    """``path``'s manifest parsed as ``model`` (a schema with ``schema_version``); PackageError when it is
    missing, invalid, or of another schema version. ``what`` names the package, ``command`` makes one."""
    if not (path / MANIFEST).exists():
        raise PackageError(f"no {MANIFEST} in {path}; run `{command}` first")
    try:
        manifest = model.model_validate_json((path / MANIFEST).read_text())
    except Exception as exc:
        raise PackageError(f"{path / MANIFEST} is not a valid {what} manifest: {exc}") from exc
    if manifest.schema_version != schema_version:
        raise PackageError(f"{what} schema {manifest.schema_version}, this service reads {schema_version}")
    return manifest


def package_version(path: Path) -> str | None:
    """The version the manifest in ``path`` names, read without loading anything else; None when there is none."""
    try:
        return json.loads((Path(path) / MANIFEST).read_text()).get("version")
    except (OSError, ValueError, AttributeError):
        return None


def load_package(path: Path) -> ModelPackage:
    path = Path(path)
    manifest = read_manifest(path, Manifest, SCHEMA_VERSION, "model package", "coldproxy export")
    verify_files(path, COMPONENTS | (EXPERT_COMPONENTS if manifest.experts is not None else {}), manifest.files)
    z = np.load(path / COMPONENTS["embeddings"])
    user_emb, item_emb = z["user_emb"].astype(np.float32), z["item_emb"].astype(np.float32)
    d = manifest.dims.id_dim
    if user_emb.shape[1] != d or item_emb.shape[1] != d:
        raise PackageError(f"embedding dims {user_emb.shape[1]}/{item_emb.shape[1]} != manifest id_dim {d}")
    if len(z["user_ids"]) != len(user_emb) or len(z["item_ids"]) != len(item_emb):
        raise PackageError("embedding rows do not match their id lists")
    proxy_ids = [str(x) for x in z["proxy_item_ids"]] if "proxy_item_ids" in z.files else []
    proxy_emb = z["proxy_item_emb"].astype(np.float32) if proxy_ids else np.zeros((0, d), np.float32)
    if proxy_emb.shape != (len(proxy_ids), d):
        raise PackageError(f"proxy_item_emb is {proxy_emb.shape}, not one {d}-dim row per proxy item")
    if proxy_ids and not set(proxy_ids).isdisjoint(z["item_ids"].tolist()):
        raise PackageError("an item is both in item_ids and proxy_item_ids")
    package = ModelPackage(
        path,
        manifest,
        [str(x) for x in z["user_ids"]],
        user_emb,
        [str(x) for x in z["item_ids"]],
        item_emb,
        seen_of(z, len(user_emb), len(item_emb) + len(proxy_ids)),
        proxy_ids,
        proxy_emb,
    )
    if manifest.id_fingerprint is not None and package.id_fingerprint != manifest.id_fingerprint:
        raise PackageError(
            f"the ID tables' fingerprint {package.id_fingerprint} is not the manifest's {manifest.id_fingerprint}"
        )
    if manifest.id_space is not None and manifest.id_space.dim != d:
        raise PackageError(f"the ID space's dimension {manifest.id_space.dim} is not the manifest's id_dim {d}")
    return package


def seen_table(n_users: int, n_items: int, served: np.ndarray, train) -> tuple[np.ndarray, np.ndarray]:
    """Each of ``n_users`` users' interactions in ``train`` as rows of ``served`` (the package's items or bundles), in
    CSR form (indptr, rows), as ``seen_of`` reads them back: what recommendations leave out for the user by default."""
    row_of = np.full(n_items, -1, np.int64)
    row_of[served] = np.arange(len(served))
    rows = row_of[train.items]
    keep = (rows >= 0) & (train.users < n_users)
    users, rows = train.users[keep].astype(np.int64), rows[keep]
    order = np.lexsort((rows, users))
    users, rows = users[order], rows[order]
    return np.searchsorted(users, np.arange(n_users + 1)).astype(np.int64), rows


def seen_of(z, n_users: int, n_items: int) -> tuple[np.ndarray, np.ndarray] | None:
    """The users' interactions kept in the embeddings file (``seen_indptr``, ``seen_items``), checked; None
    when the file has none."""
    if "seen_indptr" not in z.files:
        return None
    indptr, items = z["seen_indptr"].astype(np.int64), z["seen_items"].astype(np.int64)
    if (
        len(indptr) != n_users + 1
        or indptr[0] != 0
        or indptr[-1] != len(items)
        or (np.diff(indptr) < 0).any()
        or (len(items) and (items.min() < 0 or items.max() >= n_items))
    ):
        raise PackageError("seen_indptr / seen_items do not index the package's users and items")
    return indptr, items


def write_manifest(path: Path, manifest: BaseModel) -> None:
    tmp = Path(path) / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest.model_dump(), indent=2, default=float))
    tmp.replace(Path(path) / MANIFEST)


def staging_dir(out: Path) -> Path:
    """An empty directory beside ``out`` to build a package (or a checkpoint) in."""
    stage = out.with_name(out.name + ".staging")
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir(parents=True)
    return stage


def replace_dir(stage: Path, out: Path) -> Path:
    """Move a written package (or checkpoint) from ``stage`` to ``out``, replacing what was there: ``out`` is never
    half written."""
    old = out.with_name(out.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if out.exists():
        out.rename(old)
    stage.rename(out)
    shutil.rmtree(old, ignore_errors=True)
    return out
