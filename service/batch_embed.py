"""Offline batch scoring (``coldproxy embed``): a whole catalogue through the service's own ONNX pipeline,
no HTTP server, for users who backfill a feature store or a vector database -- into a Parquet file
(item_id, version, modalities, fusion weights, embedding as a fixed-size float32 list), or straight into
the service's Redis store, exactly as POST /v1/items would store them (content features included, warm
items refused, existing items kept unless ``overwrite``).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
from tqdm import tqdm

from coldproxy.config import ServiceSettings
from coldproxy.errors import ColdproxyError, ImageError
from coldproxy.ids import check_id
from coldproxy.package import load_package
from service.metrics import Metrics


def _batches(items: list[tuple[str, str, Path | None]], size: int):
    for start in range(0, len(items), size):
        chunk = items[start: start + size]
        yield chunk, [(text or None, image.read_bytes() if image is not None else None) for _, text, image in chunk]


def embed_to_parquet(settings: ServiceSettings, items: list[tuple[str, str, Path | None]], out: Path,
                     batch: int) -> dict:
    """Embed ``items`` (id, text, image path) with the settings' package into the Parquet file ``out``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from service.engine.pipeline import ProxyPipeline

    package = load_package(settings.package_dir)
    pipeline = ProxyPipeline(package, Metrics(), settings.ort_options(), settings.max_image_pixels)
    dim, version = package.manifest.dims.id_dim, package.manifest.version
    schema = pa.schema([("item_id", pa.string()), ("version", pa.string()), ("modalities", pa.string()),
                        ("fusion_text", pa.float32()), ("fusion_image", pa.float32()),
                        ("embedding", pa.list_(pa.float32(), dim))])
    report = {"version": version, "embedded": 0, "failed": 0, "out": str(out)}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".tmp")
    with pq.ParquetWriter(tmp, schema) as writer, tqdm(total=len(items), unit="item", desc=f"embedding with {version}") as bar:
        for chunk, inputs in _batches(items, batch):
            rows = [(it[0], r) for it, r in zip(chunk, pipeline.embed_many(inputs)) if not isinstance(r, ImageError)]
            report["failed"] += len(chunk) - len(rows)
            if rows:
                emb = np.stack([r.embedding for _, r in rows]).astype(np.float32)
                writer.write_table(pa.table({
                    "item_id": [i for i, _ in rows], "version": [version] * len(rows),
                    "modalities": [",".join(r.modalities) for _, r in rows],
                    "fusion_text": [float(r.fusion_weights[0]) for _, r in rows],
                    "fusion_image": [float(r.fusion_weights[1]) for _, r in rows],
                    "embedding": pa.FixedSizeListArray.from_arrays(pa.array(emb.ravel()), dim)}, schema=schema))
            report["embedded"] += len(rows)
            bar.update(len(chunk))
    tmp.replace(out)
    return report


def embed_to_redis(settings: ServiceSettings, items: list[tuple[str, str, Path | None]], batch: int,
                   overwrite: bool) -> dict:
    """Embed ``items`` into the service's store, as POST /v1/items:batch would (each item's own result)."""
    from service.items import NewItem, refuse_warm, store_embedded
    from service.state import Serving

    async def run() -> dict:
        serving = await Serving.open(settings, Metrics(), bundles=False)
        report = {"version": serving.version, "stored": 0, "exists": 0, "warm": 0, "failed": 0}
        try:
            with tqdm(total=len(items), unit="item", desc=f"embedding into Redis for {serving.version}") as bar:
                for chunk, inputs in _batches(items, batch):
                    keep = []
                    for (item_id, _, _), inp in zip(chunk, inputs):
                        try:
                            check_id(item_id)
                            refuse_warm(serving, item_id)
                            keep.append((item_id, inp))
                        except ColdproxyError as exc:
                            report["warm" if exc.status == 409 else "failed"] += 1
                    results = await serving.graphs.run(serving.pipeline.embed_many, [inp for _, inp in keep]) if keep else []
                    for (item_id, (text, image)), result in zip(keep, results):
                        try:
                            await store_embedded(serving, NewItem(item_id, text, image, overwrite), result)
                            report["stored"] += 1
                        except ColdproxyError as exc:
                            report["exists" if exc.status == 409 else "failed"] += 1
                    bar.update(len(chunk))
        finally:
            await serving.close()
        return report

    return asyncio.run(run())
