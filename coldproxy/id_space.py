"""A recommender's own ID space, as a team exports it: the vector files, their checks, and the space's fingerprint.

Two file formats, for item and user vectors alike (``id_column`` is ``item_id`` or ``user_id``):

* Parquet (pyarrow): a column ``item_id`` / ``user_id`` and a column ``embedding`` (a list of floats, the same
  length on every row);
* NumPy: ``NAME.npy`` (a 2-D float array, one row per ID) beside ``NAME.ids.txt`` (one ID per line, in the
  rows' order).

Every file is checked on load -- one dimension, finite values, valid and distinct IDs -- and a bad one is
refused with an ``InvalidVectors`` error that names the file and the first offending row (1-based, the
Parquet row or the line of the ids file).

A space's fingerprint identifies it: the score function, the dimension, the item file's name and a digest of
its IDs and vectors. Two model packages with the same fingerprint serve vectors of the same space; vectors of
different ones are never mixed in one index or one ranking.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from coldproxy.errors import InvalidInput
from coldproxy.ids import ID_RE

SCORES = ("dot", "cosine")  # how the recommender scores a user against an item


class InvalidVectors(InvalidInput, ValueError):
    """A vector file that cannot be used, with the file and row named in the message (a kind of ``InvalidInput``)."""


@dataclass(frozen=True)
class Vectors:
    """One table of ID vectors: ``ids[r]`` has the vector ``matrix[r]`` (float32); ``source``: the file's name."""

    ids: list[str]
    matrix: np.ndarray
    source: str

    @property
    def dim(self) -> int:
        return int(self.matrix.shape[1])

    def __len__(self) -> int:
        return len(self.ids)


def _ids_file(path: Path) -> Path:
    return path.with_name(path.name[: -len(".npy")] + ".ids.txt")


def _read_parquet(path: Path, id_column: str) -> tuple[list[str], list]:
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:  # the serving image has no pyarrow; training and the CLI's sync-ids do
        raise InvalidVectors(
            f"{path}: reading Parquet needs pyarrow (pip install 'coldproxy[train]'); or give NAME.npy + NAME.ids.txt"
        ) from exc
    try:
        table = pq.read_table(path)
    except Exception as exc:
        raise InvalidVectors(f"{path}: not a readable Parquet file: {exc}") from exc
    missing = [c for c in (id_column, "embedding") if c not in table.column_names]
    if missing:
        raise InvalidVectors(f"{path}: missing column(s) {missing}; it has {table.column_names}")
    return [None if v is None else str(v) for v in table.column(id_column).to_pylist()], table.column(
        "embedding"
    ).to_pylist()


def _read_npy(path: Path) -> tuple[list[str], np.ndarray]:
    ids_path = _ids_file(path)
    if not ids_path.exists():
        raise InvalidVectors(f"{path}: its IDs file {ids_path.name} (one ID per line, in row order) is missing")
    try:
        matrix = np.load(path, allow_pickle=False)
    except Exception as exc:
        raise InvalidVectors(f"{path}: not a readable .npy array: {exc}") from exc
    if matrix.ndim != 2 or not np.issubdtype(matrix.dtype, np.number):
        raise InvalidVectors(f"{path}: expected a 2-D numeric array, got shape {matrix.shape} of {matrix.dtype}")
    ids = ids_path.read_text(encoding="utf-8").splitlines()
    if len(ids) != len(matrix):
        raise InvalidVectors(f"{ids_path}: {len(ids)} IDs for {len(matrix)} rows of {path.name}")
    return ids, matrix


def read_vectors(path: Path, id_column: str) -> Vectors:
    """The checked vectors of one file (see the module docstring); ``InvalidVectors`` when unusable."""
    path = Path(path)
    if not path.exists():
        raise InvalidVectors(f"{path}: no such file")
    if path.suffix == ".npy":
        ids, raw = _read_npy(path)
    elif path.suffix == ".parquet":
        ids, raw = _read_parquet(path, id_column)
    else:
        raise InvalidVectors(f"{path}: expected a .parquet file or a .npy file with its .ids.txt")
    if not ids:
        raise InvalidVectors(f"{path}: no rows")
    seen: dict[str, int] = {}
    for row, value in enumerate(ids, 1):
        if value is None or not ID_RE.fullmatch(value):
            raise InvalidVectors(f"{path}: row {row}: {id_column} {value!r} is not a valid ID ({ID_RE.pattern})")
        if value in seen:
            raise InvalidVectors(f"{path}: row {row}: duplicate {id_column} {value!r} (first on row {seen[value]})")
        seen[value] = row
    if isinstance(raw, np.ndarray):
        matrix = raw.astype(np.float32)
    else:
        dim = None
        for row, vec in enumerate(raw, 1):
            if vec is None or len(vec) == 0:
                raise InvalidVectors(f"{path}: row {row}: empty embedding")
            if dim is None:
                dim = len(vec)
            elif len(vec) != dim:
                raise InvalidVectors(f"{path}: row {row}: embedding of {len(vec)} values, the rows before have {dim}")
            if any(v is None for v in vec):
                raise InvalidVectors(f"{path}: row {row}: embedding has a null value")
        matrix = np.asarray(raw, dtype=np.float32)
    bad = np.flatnonzero(~np.isfinite(matrix).all(axis=1))
    if len(bad):
        raise InvalidVectors(
            f"{path}: row {bad[0] + 1}: non-finite values (NaN or infinity; {len(bad)} rows in all, "
            "or values beyond float32's range)"
        )
    if matrix.shape[1] == 0:
        raise InvalidVectors(f"{path}: embeddings have no values")
    return Vectors(ids, np.ascontiguousarray(matrix), path.name)


def same_dimension(items: Vectors, users: Vectors | None) -> None:
    if users is not None and users.dim != items.dim:
        raise InvalidVectors(
            f"{users.source}: user vectors have {users.dim} values, the item vectors "
            f"({items.source}) {items.dim}: one space has one dimension"
        )


def normalise_rows(matrix: np.ndarray) -> np.ndarray:
    """Unit rows (a zero row stays zero): a cosine space's vectors, so that an inner product is the score."""
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return (matrix / np.where(norms > 0, norms, 1.0)).astype(np.float32)


def for_score(matrix: np.ndarray, score: str) -> np.ndarray:
    """Vectors as the service keeps them for ``score``: as given for ``dot``, unit rows for ``cosine``."""
    if score not in SCORES:
        raise ValueError(f"unknown score function {score!r}: one of {SCORES}")
    return normalise_rows(matrix) if score == "cosine" else np.asarray(matrix, np.float32)


def space_fingerprint(items: Vectors, score: str) -> str:
    """Identifies a given space: its score function, dimension, item file name, and its item IDs and vectors."""
    h = hashlib.sha256(f"{score}\x1f{items.dim}\x1f{items.source}\x1e".encode())
    h.update("\n".join(items.ids).encode())
    h.update(np.ascontiguousarray(items.matrix, dtype=np.float32).tobytes())
    return h.hexdigest()[:16]


def check_client_vector(values, dim: int, max_norm: float, field: str, unit: bool = False) -> np.ndarray:
    """A vector sent by a client, as float32: ``dim`` finite values of norm at most ``max_norm`` (``unit``: made
    unit-length first, in float64, so a huge one cannot overflow float32 into NaN scores); ``InvalidInput`` (422)
    naming ``field`` otherwise."""
    vec = np.asarray(values, dtype=np.float64)
    if vec.shape != (dim,):
        raise InvalidInput(f"{field} must have {dim} values (this model package's ID space), got {vec.size}")
    if not np.isfinite(vec).all():
        raise InvalidInput(f"{field} must be finite numbers")
    norm = float(np.linalg.norm(vec))
    if not np.isfinite(norm):
        raise InvalidInput(f"{field} is too long to measure (its norm overflows)")
    if norm > max_norm:
        raise InvalidInput(
            f"{field} has norm {norm:.4g}, above {max_norm:.4g} (the bound for this ID space): "
            "not a vector of this space"
        )
    if unit and norm > 0:
        vec = vec / norm
    if np.abs(vec).max(initial=0.0) > np.finfo(np.float32).max:
        raise InvalidInput(f"{field} holds values beyond float32's range")
    return vec.astype(np.float32)
