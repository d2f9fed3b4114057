"""Training against a team's own ID space instead of an ID model coldproxy trains (issue 38).

The files (``coldproxy.id_space``): item vectors, and optionally user vectors, from the team's recommender.
Warm items are the dataset's items with a vector; items of the file that the dataset does not hold are counted
and left out (``coldproxy sync-ids`` serves their vectors later); a cosine space's vectors are made unit-length.

Two modes, by what is given:

* **items and users**: the dataset's users become the given users (interactions of users without a vector
  are dropped, counted); every stage trains as with a trained ID model -- the generators' ranking loss (BPR
  against the given user vectors) with IDProxy's PAL and MAMEX's auxiliary losses, the diffusion expert's x0
  loss, the gate's BPR, the calibration on the validation all-items ranking.
* **items only**: there are no user vectors to rank for, so the ranking losses are skipped: the generators
  train on the alignment losses (MSE to the item's vector, PAL, MAMEX's auxiliary losses), the diffusion
  expert on its x0 loss, the gate on MSE to the item's vector (real and pseudo-cold items); nothing is
  calibrated. Each item with a vector then acts as its own query (a user with one interaction, the item):
  early stopping and every choice on validation score a held-out item's proxy by whether its own vector
  finds it among the other validation items (self-retrieval NDCG@20). ``interactions.csv`` is not read.

A warm item of the split without a vector is neither warm nor cold (``ColdStartSplit.restrict_warm``); the
validation and test items keep their vectors out of training. The package serves every item that has both a
vector and content.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from coldproxy.id_space import InvalidVectors, Vectors, for_score, read_vectors, same_dimension, space_fingerprint
from models.data import Dataset, load_dataset

log = logging.getLogger("coldproxy.train")

QUERY_PREFIX = "query:"  # items-only mode: the pseudo-user of item X is "query:X"; never packaged
FILE_NAMES = {"item_id": "item_embeddings", "user_id": "user_embeddings"}


@dataclass
class GivenSpace:
    """A given ID space aligned to a dataset: rows of ``item_emb`` are the dataset's items (zeros where none is
    given), ``user_emb`` its users (items only: each vectored item's query)."""

    item_emb: np.ndarray  # [n_items, d], in the score function's form
    has_vector: np.ndarray  # [n_items] bool
    user_emb: np.ndarray  # [n_users, d]
    ranking: bool  # user vectors given: the ranking losses run
    info: dict = field(default_factory=dict)  # the manifest's id_space record and the load report

    @property
    def package_items(self) -> np.ndarray:
        """The items the package serves as warm: every item with a vector (and content: every dataset item has)."""
        return np.flatnonzero(self.has_vector)


def _default_file(settings, column: str) -> Path | None:
    if settings.data_format != "generic":
        return None
    for suffix in (".parquet", ".npy"):
        path = Path(settings.data_dir) / (FILE_NAMES[column] + suffix)
        if path.exists():
            return path
    return None


def given_files(settings) -> tuple[Path | None, Path | None]:
    """(item vectors, user vectors) the settings name, or the generic data directory holds; (None, None): train an
    ID model. User vectors without item vectors are refused."""
    items = settings.item_embeddings or _default_file(settings, "item_id")
    users = settings.user_embeddings or _default_file(settings, "user_id")
    if users is not None and items is None:
        raise InvalidVectors(
            f"{users}: user vectors were given without item vectors (COLDPROXY_ITEM_EMBEDDINGS); "
            "a space is aligned to through its items"
        )
    return items, users


def load_training_data(settings) -> tuple[Dataset, GivenSpace | None]:
    """The settings' dataset, and the given space when there is one (the dataset then re-indexed to its users, or
    to item queries when only item vectors are given)."""
    items_file, users_file = given_files(settings)
    if items_file is None:
        return load_dataset(settings), None
    ds = load_dataset(settings, require_interactions=users_file is not None)
    return align(
        ds,
        read_vectors(items_file, "item_id"),
        None if users_file is None else read_vectors(users_file, "user_id"),
        settings.score_function,
    )


def align(ds: Dataset, items: Vectors, users: Vectors | None, score: str) -> tuple[Dataset, GivenSpace]:
    """``ds`` and the given vectors, row-aligned (see the module docstring)."""
    same_dimension(items, users)
    index = {iid: i for i, iid in enumerate(ds.item_ids)}
    rows = np.array([index.get(i, -1) for i in items.ids], np.int64)
    known = rows >= 0
    if not known.any():
        raise InvalidVectors(
            f"{items.source}: none of its {len(items)} item IDs is an item of the dataset "
            f"({ds.name}, e.g. {ds.item_ids[:3]}); are the IDs the same?"
        )
    unknown = [items.ids[r] for r in np.flatnonzero(~known)]
    if unknown:
        log.warning(
            "%s: %d of %d item vectors are for items the dataset does not hold (e.g. %s); left out of training "
            "and of the package (coldproxy sync-ids serves them)",
            items.source,
            len(unknown),
            len(items),
            unknown[:5],
        )
    matrix = for_score(items.matrix, score)
    item_emb = np.zeros((ds.n_items, items.dim), np.float32)
    item_emb[rows[known]] = matrix[known]
    has_vector = np.zeros(ds.n_items, bool)
    has_vector[rows[known]] = True
    info = {
        "source": "given",
        "fingerprint": space_fingerprint(items, score),
        "score": score,
        "dim": items.dim,
        "item_file": items.source,
        "user_file": None if users is None else users.source,
        "item_vectors": len(items),
        "user_vectors": 0 if users is None else len(users),
        "report": {
            "unknown_item_rows": len(unknown),
            "unknown_item_examples": unknown[:5],
            "items_without_vector": int(ds.n_items - has_vector.sum()),
        },
    }
    if users is None:
        vectored = np.flatnonzero(has_vector)
        queries = Dataset(
            name=ds.name,
            item_ids=ds.item_ids,
            item_texts=ds.item_texts,
            item_images=ds.item_images,
            user_ids=[QUERY_PREFIX + ds.item_ids[i] for i in vectored],
            users=np.arange(len(vectored), dtype=np.int64),
            items=vectored.astype(np.int64),
            provenance=ds.provenance | {"interactions": "none: item vectors only, each item its own query"},
        )
        return queries, GivenSpace(item_emb, has_vector, item_emb[vectored].copy(), False, info)
    aligned, dropped = ds.with_users(users.ids)
    if dropped:
        log.warning(
            "%d of %d interactions are by users without a vector in %s; dropped", dropped, len(ds.items), users.source
        )
    if len(aligned.items) == 0:
        raise InvalidVectors(
            f"{users.source}: no interaction is by a user of this file (e.g. {users.ids[:3]}); "
            f"the dataset's users look like {ds.user_ids[:3]}"
        )
    info["report"]["interactions_without_user_vector"] = dropped
    return aligned, GivenSpace(item_emb, has_vector, for_score(users.matrix, score), True, info)


def diagnostics(space: GivenSpace, split, seed: int) -> dict:
    """How well the given vectors predict held-out warm interactions, against popularity and random
    (``models.idmodel.id_model_diagnostics``): IDs that do not match the dataset's show up here. Items only:
    nothing to measure."""
    from models.evaluate import evaluate_candidates
    from models.idmodel import id_model_diagnostics

    if not space.ranking:
        return {"warning": None, "learnt": None, "note": "item vectors only: no users to rank for"}
    ndcg = evaluate_candidates(space.user_emb, space.item_emb, split.warm_items, split.warm_val, split.train, (20,))[
        "ndcg@20"
    ]
    return id_model_diagnostics(
        ndcg,
        space.user_emb.shape[0],
        space.item_emb.shape[0],
        split,
        seed,
        "the given vectors'",
        "check that the vector files' IDs are the interactions' IDs, and COLDPROXY_SCORE_FUNCTION",
    )


def training_vectors(space: GivenSpace, warm: np.ndarray) -> np.ndarray:
    """The item vectors training sees: the warm items', zeros for every other item (validation and test items'
    vectors stay out)."""
    out = np.zeros_like(space.item_emb)
    out[warm] = space.item_emb[warm]
    return out
