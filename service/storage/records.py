"""What one stored entry is: the Redis hash of an item or bundle (``StoredItem``), what a bulk read returns of it
(``Entry``), and the checks every vector passes before it is stored. The key layout is in ``service.storage.store``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np


def check_vector(emb: np.ndarray, dim: int) -> None:
    """Nothing but finite vectors of the package's dimension is ever stored."""
    if emb.shape != (dim,) or not np.isfinite(emb).all():
        raise ValueError(f"refusing to store a {emb.shape} vector with non-finite values or a dim other than {dim}")


FROM_RECOMMENDER = b"id"  # the ``src`` of a vector the recommender gave (a proxy has none)


class Entry(NamedTuple):
    """An entry's stored vector, whether the recommender gave it, and when it was first stored (epoch seconds)."""

    vector: np.ndarray
    given: bool
    posted: float


VECTOR_FIELDS = ("emb", "proxy", "diffusion", "id_embedding", "anchor")
# what one record may carry and the next may not: an overwrite deletes those its record lacks (a re-gated item
# is no longer "src": "id", a re-POSTed one has no interactions); "posted_at" and other fields stay
REPLACED_FIELDS = frozenset(VECTOR_FIELDS[1:]) | {"fusion_weights", "interactions", "src"}


@dataclass(frozen=True)
class StoredItem:
    """One entry's hash as stored: the served ``embedding`` and its ``modalities``; for items of a
    package with a cold-aware gate also the experts' outputs (``proxy``, ``diffusion``, ``anchor``), the generator's
    ``fusion_weights``, the ``interactions`` count the gate last used and the recommender's
    ``id_embedding`` when one was sent; anything else (a bundle's ``members``...) in ``fields``."""

    embedding: np.ndarray
    modalities: list[str]
    proxy: np.ndarray | None = None
    diffusion: np.ndarray | None = None
    fusion_weights: list[float] | None = None
    interactions: int | None = None
    id_embedding: np.ndarray | None = None
    fields: dict[str, str] = field(default_factory=dict)
    anchor: np.ndarray | None = None

    def vectors(self) -> dict[str, np.ndarray]:
        """The hash's vector fields that are set, by field name."""
        return {
            name: v
            for name, v in zip(
                VECTOR_FIELDS, (self.embedding, self.proxy, self.diffusion, self.id_embedding, self.anchor)
            )
            if v is not None
        }

    def to_hash(self) -> dict[str, bytes | str | int]:
        """The Redis hash: vectors as float32 bytes, lists comma-joined, ``fields`` as given."""
        out: dict = {name: v.astype(np.float32).tobytes() for name, v in self.vectors().items()}
        out["modalities"] = ",".join(self.modalities)
        if self.fusion_weights is not None:
            out["fusion_weights"] = ",".join(f"{float(w):.9g}" for w in self.fusion_weights)
        if self.interactions is not None:
            out["interactions"] = int(self.interactions)
        return out | self.fields

    @classmethod
    def from_hash(cls, raw: dict[bytes, bytes]) -> "StoredItem":
        values = {key.decode(): value for key, value in raw.items()}
        vec = {name: np.frombuffer(values.pop(name), dtype=np.float32) for name in VECTOR_FIELDS if name in values}
        modalities = values.pop("modalities", b"").decode()
        weights, interactions = values.pop("fusion_weights", None), values.pop("interactions", None)
        return cls(
            vec["emb"],
            [m for m in modalities.split(",") if m],
            vec.get("proxy"),
            vec.get("diffusion"),
            None if weights is None else [float(w) for w in weights.decode().split(",")],
            None if interactions is None else int(interactions),
            vec.get("id_embedding"),
            {k: v.decode() for k, v in values.items()},
            vec.get("anchor"),
        )

    def has_experts(self, dim: int, anchor: bool = True) -> bool:
        """Whether the experts' outputs needed to re-gate the item are here, finite and of ``dim`` (the
        anchor only for a package whose gate has that expert)."""
        parts = (self.proxy, self.diffusion) + ((self.anchor,) if anchor else ())
        return self.fusion_weights is not None and all(
            v is not None and v.shape == (dim,) and bool(np.isfinite(v).all()) for v in parts
        )


def same_write(stored: list[bytes | None], expect: StoredItem) -> bool:
    """Whether a hash's (created_at, emb) are still those of the record ``expect`` was read as."""
    created, emb = stored
    return (
        created is not None
        and created.decode() == expect.fields.get("created_at")
        and emb == expect.embedding.astype(np.float32).tobytes()
    )
