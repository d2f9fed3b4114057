"""The catalogue an offline run embeds, as rows (item_id, text, image) where image is a local path or a URI that
pyarrow's filesystems read (``s3://``, ``gs://``, ``hdfs://``, ``file://``), or empty: the generic ``items.csv`` or a
Parquet table with those columns (a MovieLens directory through ``catalogue_table``, from the CLI). Rows are read
leniently: an unreadable or missing image, an empty row or a repeated ID fails that row alone, in the worker, with its
reason."""

from __future__ import annotations

import csv
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

COLUMNS = ("item_id", "text", "image")


def read_catalogue(path: Path, data_format: str | None = None) -> pa.Table:
    """(item_id, text, image) strings, one row per catalogue item, in the catalogue's order. ``path``: a Parquet file
    or dataset directory, or a directory holding ``items.csv`` (generic)."""
    path = Path(path)
    if path.suffix == ".parquet" or data_format == "parquet":
        table = pq.read_table(path)
        missing = [c for c in COLUMNS if c not in table.column_names and c != "image"]
        if missing:
            raise ValueError(f"{path}: a catalogue table needs the columns item_id, text and image (missing {missing})")
        return pa.table({c: _strings(table[c] if c in table.column_names else pa.nulls(len(table)), len(table))
                         for c in COLUMNS})
    if data_format == "movielens":
        raise ValueError("a MovieLens directory is read by the CLI (models.data), then given as catalogue_table(...)")
    rows = {c: [] for c in COLUMNS}
    with (path / "items.csv").open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            image = (row.get("image") or "").strip()
            rows["item_id"].append(row.get("item_id") or "")
            rows["text"].append((row.get("text") or "").strip())
            rows["image"].append(str(path / image) if image and "://" not in image else image)
    return pa.table(rows)


def catalogue_table(ids: list[str], texts: list[str], images: list[Path | None]) -> pa.Table:
    """The rows of a catalogue read elsewhere (``models.data``: MovieLens) as ``read_catalogue`` gives them."""
    return pa.table({"item_id": ids, "text": texts, "image": [str(p) if p else "" for p in images]})


def _strings(column, n: int) -> pa.Array:
    return pa.array(["" if v is None else str(v) for v in column.to_pylist()],
                    pa.string()) if n else pa.array([], pa.string())


def read_image(ref: str) -> bytes:
    """The bytes of a local path or a pyarrow-filesystem URI."""
    if "://" not in ref:
        return Path(ref).read_bytes()
    from pyarrow import fs

    filesystem, inner = fs.FileSystem.from_uri(ref)
    with filesystem.open_input_stream(inner) as stream:
        return stream.read()
