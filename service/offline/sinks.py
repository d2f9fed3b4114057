"""Where an offline run's vectors go, and what an earlier run already put there (so a rerun skips it):

* ``ParquetSink``: a partitioned Parquet dataset (``part-00000.parquet``, ...; any Parquet reader takes the
  directory as one table) of item_id, version, modalities, fusion weights and the embedding as a fixed-size float32
  list. Each part is written whole and renamed into place, so an interrupted run leaves only whole parts; a rerun
  skips the items the parts hold, and refuses a directory holding another package version's vectors.
* ``RedisSink``: the service's store, exactly as POST /v1/items stores an item (content features kept for
  re-embedding, warm items refused, existing items kept unless ``overwrite``).

Both write the run's failed rows (item_id, reason) to ``errors_path``."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from coldproxy.errors import ColdproxyError, Conflict, InvalidInput


def errors_path(out: Path) -> Path:
    """``vectors.parquet`` -> ``vectors.errors.parquet``, beside the dataset (not in it)."""
    return out.with_name(f"{out.name.removesuffix('.parquet')}.errors.parquet")


def write_errors(path: Path, errors: list[tuple[str, str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    pq.write_table(
        pa.table(
            {
                "item_id": pa.array([i for i, _ in errors], pa.string()),
                "reason": pa.array([r for _, r in errors], pa.string()),
            }
        ),
        tmp,
    )
    tmp.replace(path)


class ParquetSink:
    COUNTS = ("embedded",)

    def __init__(self, out: Path, version: str, dim: int):
        self.out, self.version, self.dim = Path(out), version, dim
        self.schema = pa.schema(
            [
                ("item_id", pa.string()),
                ("version", pa.string()),
                ("modalities", pa.string()),
                ("fusion_text", pa.float32()),
                ("fusion_image", pa.float32()),
                ("embedding", pa.list_(pa.float32(), dim)),
            ]
        )
        if self.out.is_file():
            raise ColdproxyError(f"{self.out} is a file; the output is a Parquet dataset directory: give a new path")
        self.out.mkdir(parents=True, exist_ok=True)
        self.parts = sorted(self.out.glob("part-*.parquet"))
        done = pq.read_table(self.parts, columns=["item_id", "version"]) if self.parts else None
        versions = set(done["version"].to_pylist()) if done is not None else set()
        if versions - {version}:
            raise ColdproxyError(
                f"{self.out} holds vectors of package {sorted(versions - {version})}, not {version}: "
                "give another output directory, or remove it"
            )
        self.done = set(done["item_id"].to_pylist()) if done is not None else set()

    def skip(self, item_ids: list[str]) -> dict[str, str]:
        """Items not to embed, and why (here: already written by an earlier run)."""
        return {i: "written" for i in item_ids if i in self.done}

    def write(self, cols: dict[str, np.ndarray]) -> dict[str, int]:
        ok = [r for r, e in enumerate(cols["error"]) if not e]
        if ok:
            emb = np.ascontiguousarray(cols["embedding"][ok], np.float32)
            table = pa.table(
                {
                    "item_id": [str(cols["item_id"][r]) for r in ok],
                    "version": [self.version] * len(ok),
                    "modalities": [str(cols["modalities"][r]) for r in ok],
                    "fusion_text": cols["fusion"][ok, 0],
                    "fusion_image": cols["fusion"][ok, 1],
                    "embedding": pa.FixedSizeListArray.from_arrays(pa.array(emb.ravel()), self.dim),
                },
                schema=self.schema,
            )
            path = self.out / f"part-{len(self.parts):05d}.parquet"
            tmp = path.with_name(path.name + ".tmp")
            pq.write_table(table, tmp)
            tmp.replace(path)
            self.parts.append(path)
        return {"embedded": len(ok)}

    def close(self) -> None:
        pass


class RedisSink:
    """The service's store, opened as a replica opens it (without bundles), on an event loop of its own."""

    COUNTS = ("stored", "exists")

    def __init__(self, settings, overwrite: bool):
        from service.metrics import Metrics
        from service.serving import Serving

        self.overwrite, self.loop = overwrite, asyncio.new_event_loop()
        self.serving = self.loop.run_until_complete(Serving.open(settings, Metrics(), bundles=False))
        self.version = self.serving.version

    def skip(self, item_ids: list[str]) -> dict[str, str]:
        """Warm items (served from the ID model: refused, 409 on POST) and, unless ``overwrite``, items the store
        already holds for this package version (an earlier run's, or a POST's)."""
        warm = self.serving.items.warm
        out = {i: "warm" for i in item_ids if i in warm}
        if not self.overwrite:
            rest = [i for i in item_ids if i not in out]
            held = self.loop.run_until_complete(self.serving.items.store.exists_many(rest)) if rest else []
            out |= {i: "exists" for i, h in zip(rest, held) if h}
        return out

    def write(self, cols: dict[str, np.ndarray]) -> dict[str, int]:
        """Store each good row; a row the store refuses (a non-finite vector: 422) gets its reason in ``cols["error"]``
        instead. An unavailable store (503) stops the run: a rerun goes on where it stopped."""
        from service.offline.worker import embedded
        from service.writes import NewItem, store_embedded

        counts = {"stored": 0, "exists": 0}
        for r, error in enumerate(cols["error"]):
            if error:
                continue
            item = NewItem(str(cols["item_id"][r]), None, None, self.overwrite)
            try:
                self.loop.run_until_complete(store_embedded(self.serving, item, embedded(cols, r)))
                counts["stored"] += 1
            except Conflict:
                counts["exists"] += 1  # POSTed meanwhile
            except InvalidInput as exc:
                cols["error"][r] = str(exc)
        return counts

    def close(self) -> None:
        self.loop.run_until_complete(self.serving.close())
        self.loop.close()
