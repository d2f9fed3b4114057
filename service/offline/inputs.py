"""The catalogue an offline run embeds, as rows (item_id, text, image) where image is a local path or a URI that
pyarrow's filesystems read (``s3://``, ``gs://``, ``hdfs://``, ``file://``), or empty: the generic ``items.csv`` or a
Parquet table with those columns (a MovieLens directory through ``catalogue_table``, from the CLI). Rows are read
leniently: an unreadable or missing image, an empty row or a repeated ID fails that row alone, in the worker, with its
reason."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit
from urllib.request import url2pathname

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
        return pa.table(
            {c: _strings(table[c] if c in table.column_names else pa.nulls(len(table)), len(table)) for c in COLUMNS}
        )
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


def with_catalogue_root(settings, path: Path):
    """``settings`` whose image roots include the catalogue's own directory (``path``: the directory, or the Parquet
    file in it): the images a catalogue names normally lie beside it."""
    root = Path(path) if Path(path).is_dir() else Path(path).parent
    return settings.model_copy(update={"embed_image_roots": [root, *settings.embed_image_roots]})


def catalogue_table(ids: list[str], texts: list[str], images: list[Path | None]) -> pa.Table:
    """The rows of a catalogue read elsewhere (``models.data``: MovieLens) as ``read_catalogue`` gives them."""
    return pa.table({"item_id": ids, "text": texts, "image": [str(p) if p else "" for p in images]})


def _strings(column, n: int) -> pa.Array:
    return (
        pa.array(["" if v is None else str(v) for v in column.to_pylist()], pa.string())
        if n
        else pa.array([], pa.string())
    )


@dataclass(frozen=True)
class ImagePolicy:
    """Where a catalogue's image references may lead, and how much is read: a catalogue may come from anyone, and
    ``../../etc/shadow``, ``file:///dev/zero`` or a 40 GB object are references like any other. Local paths (and
    ``file://`` URIs) must be regular files under one of ``roots`` (the catalogue's own directory, and
    COLDPROXY_EMBED_IMAGE_ROOTS); other URIs must use one of ``schemes`` (COLDPROXY_EMBED_IMAGE_SCHEMES); an image over
    ``max_bytes`` fails its row."""

    roots: tuple[str, ...]
    schemes: tuple[str, ...]
    max_bytes: int


def read_image(ref: str, policy: ImagePolicy) -> bytes:
    """The bytes of a local path (or ``file://`` URI) or a pyarrow-filesystem URI the policy allows (``ValueError``
    otherwise)."""
    if "://" not in ref or ref.lower().startswith("file://"):
        path = Path(url2pathname(urlsplit(ref).path) if "://" in ref else ref).resolve()
        if not any(path.is_relative_to(Path(root).resolve()) for root in policy.roots):
            raise ValueError(f"{ref} is outside the catalogue's directory and COLDPROXY_EMBED_IMAGE_ROOTS")
        if not path.is_file():
            raise ValueError(f"{ref} is not a regular file")
        with path.open("rb") as f:
            return _capped(f.read(policy.max_bytes + 1), ref, policy.max_bytes)
    scheme = ref.split("://", 1)[0].lower()
    if scheme not in policy.schemes:
        raise ValueError(f"{scheme}:// is not among COLDPROXY_EMBED_IMAGE_SCHEMES {list(policy.schemes)}")
    from pyarrow import fs

    filesystem, inner = fs.FileSystem.from_uri(ref)
    with filesystem.open_input_stream(inner) as stream:
        return _capped(stream.read(policy.max_bytes + 1), ref, policy.max_bytes)


def _capped(data: bytes, ref: str, max_bytes: int) -> bytes:
    if len(data) > max_bytes:
        raise ValueError(f"{ref} is larger than {max_bytes} bytes (COLDPROXY_MAX_REQUEST_BYTES)")
    return data
