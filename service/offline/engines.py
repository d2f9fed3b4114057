"""Drives an offline run (``coldproxy embed``): the catalogue's rows, less those the sink already holds and repeated
IDs, in batches through ``EmbedWorker`` -- in this process on every usable core (``local``: decode on a thread pool
of that many threads, ONNX Runtime with as many), or on a Ray cluster (``ray``: Ray Data's ``map_batches`` over an
actor pool, each actor loading the package once) -- into the sink, with a report of what was written, skipped and
refused, and the failed rows in the errors table. ``ray`` is an optional extra (``pip install coldproxy[ray]``)."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow as pa
from tqdm import tqdm

from coldproxy.config import ServiceSettings, usable_cores
from coldproxy.errors import ColdproxyError
from coldproxy.package import SCHEMA_VERSION, Manifest, read_manifest
from service.offline.inputs import ImagePolicy
from service.offline.sinks import ParquetSink, RedisSink, errors_path, write_errors
from service.offline.worker import EmbedWorker

SKIP_CHUNK = 10_000  # IDs per store lookup when working out what an earlier run wrote


def embed_catalogue(
    settings: ServiceSettings,
    catalogue: pa.Table,
    out: Path | None = None,
    redis: bool = False,
    overwrite: bool = False,
    batch: int = 64,
    engine: str = "local",
    address: str | None = None,
    actors: int | None = None,
    cpus_per_actor: int = 1,
    errors: Path | None = None,
    progress: bool = True,
) -> dict:
    """Embed ``catalogue`` (``service.offline.inputs.read_catalogue``) into ``out`` (a Parquet dataset) or, with
    ``redis``, the settings' store. Returns the report; the failed rows go to ``errors`` (default: beside ``out``,
    or ``embed.errors.parquet`` in the working directory for Redis)."""
    if (out is None) == (not redis):
        raise ColdproxyError("give one of an output directory and the Redis store")
    manifest = read_manifest(Path(settings.package_dir), Manifest, SCHEMA_VERSION, "model package", "coldproxy export")
    sink = RedisSink(settings, overwrite) if redis else ParquetSink(out, manifest.version, manifest.dims.id_dim)
    errors_file = errors or (errors_path(out) if out is not None else Path("embed.errors.parquet"))
    t0 = time.perf_counter()
    try:
        ids = catalogue["item_id"].to_pylist()
        failed: list[tuple[str, str]] = []
        seen, keep = set(), []
        for r, item_id in enumerate(ids):
            if item_id in seen:
                failed.append((item_id, f"duplicate item_id (row {r})"))
            else:
                seen.add(item_id)
                keep.append(r)
        skipped: dict[str, str] = {}
        unique = [ids[r] for r in keep]
        for start in range(0, len(unique), SKIP_CHUNK):
            skipped |= sink.skip(unique[start : start + SKIP_CHUNK])
        todo = catalogue.take(pa.array([r for r in keep if ids[r] not in skipped], pa.int64()))
        report = {"engine": engine, "version": sink.version, "rows": len(ids), "todo": len(todo)}
        counts, write_s, first = Counter(dict.fromkeys(sink.COUNTS, 0)), 0.0, None
        runs = _ray if engine == "ray" else _local
        with tqdm(
            total=len(todo), unit="item", desc=f"embedding with {sink.version} ({engine})", disable=not progress
        ) as bar:
            for cols in runs(settings, todo, batch, keep=redis, address=address, actors=actors, cpus=cpus_per_actor):
                cols |= {k: np.array(cols[k], dtype=object) for k in ("item_id", "error", "modalities")}  # writable
                if first is None:  # start-up (sessions loaded, actors started) and the first batch's own work
                    first = (time.perf_counter() - t0, len(cols["item_id"]))
                t_write = time.perf_counter()
                counts.update(sink.write(cols))
                write_s += time.perf_counter() - t_write
                failed += [(str(i), str(e)) for i, e in zip(cols["item_id"], cols["error"]) if e]
                bar.update(len(cols["item_id"]))
    finally:
        sink.close()
    write_errors(errors_file, failed)
    seconds = time.perf_counter() - t0
    done = counts.get("embedded", 0) + counts.get("stored", 0)
    return (
        report
        | counts
        | {
            "skipped": dict(Counter(skipped.values())),
            "failed": len(failed),
            "errors": str(errors_file),
            "seconds": round(seconds, 2),
            "write_s": round(write_s, 2),
            "items_per_s": round(done / seconds, 1) if seconds else None,
            **_after_first(first, len(todo), seconds),
            **({"out": str(out)} if out is not None else {}),
        }
    )


def _after_first(first: tuple[float, int] | None, rows: int, seconds: float) -> dict:
    """Seconds to the first batch out (start-up included) and the rows/s after it: a long backfill's rate."""
    if first is None or rows <= first[1] or seconds <= first[0]:
        return {"first_batch_s": None if first is None else round(first[0], 2), "after_first_rows_per_s": None}
    return {
        "first_batch_s": round(first[0], 2),
        "after_first_rows_per_s": round((rows - first[1]) / (seconds - first[0]), 1),
    }


def _worker_args(settings: ServiceSettings, threads: int, keep: bool) -> dict:
    images = ImagePolicy(
        tuple(str(r) for r in settings.embed_image_roots),
        tuple(settings.embed_image_schemes),
        settings.max_request_bytes,
    )
    return {
        "package_dir": str(settings.package_dir),
        "ort": settings.ort_options() | {"intra_threads": threads},
        "max_pixels": settings.max_image_pixels,
        "decode_threads": threads,
        "keep": keep,
        "images": images,
    }


def _columns(table: pa.Table) -> dict[str, np.ndarray]:
    return {c: np.array(table[c].to_pylist(), dtype=object) for c in ("item_id", "text", "image")}


def _local(settings: ServiceSettings, todo: pa.Table, batch: int, keep: bool, **_) -> Iterator[dict[str, np.ndarray]]:
    """In this process: the next batch is read and decoded while the graphs run over this one."""
    worker = EmbedWorker(**_worker_args(settings, usable_cores(), keep))
    starts = range(0, len(todo), batch)
    with ThreadPoolExecutor(1, thread_name_prefix="prefetch") as ahead:
        chunk = _columns(todo.slice(0, batch))
        upcoming = ahead.submit(worker.prepare, chunk)
        for start in starts:
            prepared, current = upcoming.result(), chunk
            if start + batch < len(todo):
                chunk = _columns(todo.slice(start + batch, batch))
                upcoming = ahead.submit(worker.prepare, chunk)
            yield worker.finish(current, prepared)


def _ray(
    settings: ServiceSettings,
    todo: pa.Table,
    batch: int,
    keep: bool,
    address: str | None,
    actors: int | None,
    cpus: int,
) -> Iterator[dict[str, np.ndarray]]:
    try:
        import ray
    except ImportError as exc:
        raise ColdproxyError("--engine ray needs Ray: pip install 'coldproxy[ray]'") from exc
    if not len(todo):
        return
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
    pool = actors or max(1, int(ray.cluster_resources().get("CPU", 1) // cpus))
    # one block a batch: spread over the pool
    blocks = [todo.slice(start, batch) for start in range(0, len(todo), batch)]
    ds = ray.data.from_arrow(blocks).map_batches(
        EmbedWorker,
        fn_constructor_kwargs=_worker_args(settings, cpus, keep),
        batch_size=batch,
        batch_format="numpy",
        concurrency=pool,
        num_cpus=cpus,
    )
    yield from ds.iter_batches(batch_size=None, batch_format="numpy")
