"""One process's share of an offline run: ``EmbedWorker`` holds the package's ONNX sessions (loaded once) and turns a
batch of catalogue rows into result columns -- images read and decoded on a thread pool, then each graph run once
over the batch, exactly as POST /v1/items:batch runs them. The local engine calls it in-process; on Ray each actor
holds one. ``embedded`` turns a result row back into what the service stores."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from coldproxy.errors import ColdproxyError, ImageError
from coldproxy.ids import check_id
from coldproxy.package import load_package
from service.engine.features import feature_width
from service.engine.pipeline import Embedded, Prepared, ProxyPipeline
from service.metrics import Metrics
from service.offline.inputs import ImagePolicy, read_image

PARTS = ("proxy", "diffusion", "anchor")


class EmbedWorker:
    """``keep``: also return what the Redis store keeps (the experts' outputs, the packed content features)."""

    def __init__(
        self, package_dir: str, ort: dict, max_pixels: int, decode_threads: int, keep: bool, images: ImagePolicy
    ):
        package = load_package(Path(package_dir))
        self.images = images
        self.pipeline = ProxyPipeline(package, Metrics(), ort, max_pixels)
        self.version, self.dim, self.keep = package.manifest.version, package.manifest.dims.id_dim, keep
        self.pool = ThreadPoolExecutor(max(1, decode_threads), thread_name_prefix="decode")

    def _prepare(self, item_id: str, text: str, image: str) -> Prepared | str:
        """The row decoded, or the reason it fails."""
        try:
            check_id(item_id)
        except ColdproxyError as exc:
            return str(exc)
        if not text and not image:
            return "neither text nor image"
        data = None
        if image:
            try:
                data = read_image(image, self.images)
            except (OSError, ValueError) as exc:
                return f"image unreadable: {type(exc).__name__}: {exc}"
        prepared = self.pipeline.prepare(text or None, data)
        return str(prepared.error) if prepared.error is not None else prepared

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self.finish(batch, self.prepare(batch))

    def prepare(self, batch: dict[str, np.ndarray]) -> list[Prepared | str]:
        """Each row read and decoded on the thread pool (the local engine overlaps this with the previous batch's
        graphs), or its reason for failing."""
        return list(self.pool.map(self._prepare, *(list(batch[c]) for c in ("item_id", "text", "image"))))

    def finish(self, batch: dict[str, np.ndarray], prepared: list[Prepared | str]) -> dict[str, np.ndarray]:
        """The graphs over the batch's prepared rows -> result columns."""
        ids = list(batch["item_id"])
        ok = [r for r, p in enumerate(prepared) if not isinstance(p, str)]
        errors = [p if isinstance(p, str) else "" for p in prepared]
        try:
            results = self.pipeline.infer([prepared[r] for r in ok]) if ok else []
        except Exception:  # one row the graphs cannot take must not fail the batch: run them one by one
            results = [self._alone(prepared[r]) for r in ok]
        n = len(ids)
        out = {
            "item_id": np.array(ids, dtype=object),
            "error": np.array(errors, dtype=object),
            "embedding": np.zeros((n, self.dim), np.float32),
            "modalities": np.array([""] * n, dtype=object),
            "fusion": np.zeros((n, 2), np.float32),
        }
        if self.keep:
            width = max(1, len(self.pipeline.experts))  # all NaN without a gate (a zero-width column trips Arrow)
            out |= {
                "expert_weights": np.full((n, width), np.nan, np.float32),
                **{k: np.full((n, self.dim), np.nan, np.float32) for k in PARTS},
                "features": np.zeros((n, feature_width(self.pipeline.dims)), np.float32),
            }
        for r, result in zip(ok, results):
            if isinstance(result, (ImageError, str)):  # a bad image, or the graphs' failure on this row alone
                out["error"][r] = str(result)
                continue
            out["embedding"][r], out["modalities"][r], out["fusion"][r] = (
                result.embedding,
                ",".join(result.modalities),
                result.fusion_weights,
            )
            if self.keep:
                if result.expert_weights is not None:
                    out["expert_weights"][r] = result.expert_weights
                for k, v in result.parts.items():
                    out[k][r] = v
                out["features"][r] = result.features
        return out

    def _alone(self, prepared: Prepared):
        try:
            return self.pipeline.infer([prepared])[0]
        except Exception as exc:
            return f"the graphs failed on this item: {type(exc).__name__}: {exc}"


def embedded(columns: dict[str, np.ndarray], r: int) -> Embedded:
    """Row ``r`` of a kept result batch as the pipeline's ``Embedded`` (what ``store_embedded`` writes)."""
    weights = columns["expert_weights"][r]
    parts = {k: columns[k][r] for k in PARTS if not np.isnan(columns[k][r]).any()}
    return Embedded(
        columns["embedding"][r],
        [m for m in str(columns["modalities"][r]).split(",") if m],
        columns["fusion"][r],
        None if np.isnan(weights).any() else weights,
        parts,
        columns["features"][r],
    )
