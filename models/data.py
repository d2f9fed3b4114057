"""One in-memory dataset type and its loaders (the splits are ``models.split``).

Generic on-disk format (what users fill with their own data), in one directory:

* ``interactions.csv`` — header ``user_id,item_id[,timestamp][,weight]``; a row is a positive (implicit)
  interaction, and one with weight <= 0 an interaction that is *seen, not positive*: never trained on, left out of
  the user's recommendations all the same.
* ``items.csv`` — header ``item_id,text,image``; ``image`` is a path relative to the directory
  (or absolute), empty when the item has no image; ``text`` may be empty when it has none.

The MovieLens-posters folder is one more adapter to the same type: a rating at or above the threshold is a positive,
one below it seen, not positive. An item's text is its content at upload (title and genres); the users' tags are
interaction data and join the text only when ``item_tags`` says so.
"""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass
class Interactions:
    """Parallel arrays of user and item indices, one row an interaction."""

    users: np.ndarray
    items: np.ndarray

    def __len__(self) -> int:
        return len(self.users)


@dataclass
class Dataset:
    """Items with content, users, and positive interactions as parallel index arrays; ``seen_only``: the
    interactions that are not positives (a rating below the threshold, a weight <= 0) of the same users, never trained
    on and left out of recommendations (a user with no positive at all has no ID vector and is not a user here)."""

    name: str
    item_ids: list[str]
    item_texts: list[str]
    item_images: list[Path | None]
    user_ids: list[str]
    users: np.ndarray  # int64 user index per interaction
    items: np.ndarray  # int64 item index per interaction
    timestamps: np.ndarray | None = None
    weights: np.ndarray | None = None
    provenance: dict = field(default_factory=dict)
    seen_only: Interactions | None = None

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def seen(self) -> Interactions:
        """Every interaction the data holds: the positives and the seen-only ones."""
        if self.seen_only is None or not len(self.seen_only):
            return Interactions(self.users, self.items)
        return Interactions(
            np.concatenate([self.users, self.seen_only.users]), np.concatenate([self.items, self.seen_only.items])
        )

    def _seen_only_kept(self, user_map: np.ndarray, item_map: np.ndarray) -> Interactions | None:
        """``seen_only`` with users and items renumbered by ``user_map`` / ``item_map`` (-1: dropped)."""
        if self.seen_only is None:
            return None
        u, i = user_map[self.seen_only.users], item_map[self.seen_only.items]
        keep = (u >= 0) & (i >= 0)
        return Interactions(u[keep], i[keep])

    def content_key(self) -> str:
        """Hash of the item content (ids, texts, image paths and sizes), for the feature cache."""
        h = hashlib.sha256()
        for iid, text, img in zip(self.item_ids, self.item_texts, self.item_images):
            size = img.stat().st_size if img is not None else -1
            h.update(f"{iid}\x1f{text}\x1f{img.name if img else ''}\x1f{size}\x1e".encode())
        return h.hexdigest()[:16]

    @classmethod
    def from_rows(
        cls,
        name,
        item_ids,
        texts,
        images,
        user_of_row,
        item_of_row,
        ts,
        provenance,
        weights=None,
        seen_rows: tuple[list, list] = ((), ()),
    ) -> "Dataset":
        """Build from per-interaction rows: external user IDs and item indices; users indexed in order of appearance.
        ``seen_rows``: (external user IDs, item indices) of the seen-only interactions; those of a user without a
        positive are dropped (such users are counted in the provenance: without an ID vector they are not users)."""
        user_ids = list(dict.fromkeys(user_of_row))
        index = {u: i for i, u in enumerate(user_ids)}
        seen_users = np.array([index.get(u, -1) for u in seen_rows[0]], dtype=np.int64)
        seen_items = np.array(seen_rows[1], dtype=np.int64)
        known = seen_users >= 0
        return cls(
            name=name,
            item_ids=item_ids,
            item_texts=texts,
            item_images=images,
            user_ids=user_ids,
            users=np.array([index[u] for u in user_of_row], dtype=np.int64),
            items=np.array(item_of_row, dtype=np.int64),
            timestamps=np.array(ts, dtype=np.int64),
            weights=None if weights is None else np.array(weights, dtype=np.float32),
            provenance=provenance
            | {
                "seen_only_interactions": int(known.sum()),
                "users_without_a_positive": len(set(seen_rows[0]) - index.keys()),
            },
            seen_only=Interactions(seen_users[known], seen_items[known]),
        )

    def with_users(self, user_ids: list[str]) -> tuple["Dataset", int]:
        """The same items with exactly ``user_ids`` as users, in that order (a given ID space's users): interactions
        of other users are dropped. Returns (dataset, interactions dropped)."""
        index = {u: i for i, u in enumerate(user_ids)}
        remap = np.array([index.get(u, -1) for u in self.user_ids], dtype=np.int64)
        new = remap[self.users] if len(self.users) else np.zeros(0, np.int64)
        keep = new >= 0
        return Dataset(
            name=self.name,
            item_ids=self.item_ids,
            item_texts=self.item_texts,
            item_images=self.item_images,
            user_ids=list(user_ids),
            users=new[keep],
            items=self.items[keep],
            timestamps=None if self.timestamps is None else self.timestamps[keep],
            weights=None if self.weights is None else self.weights[keep],
            provenance=self.provenance,
            seen_only=self._seen_only_kept(remap, np.arange(self.n_items)),
        ), int((~keep).sum())

    def most_popular(self, max_items: int) -> "Dataset":
        """Keep the ``max_items`` items with the most interactions (ties by index), and their users."""
        counts = np.bincount(self.items, minlength=self.n_items)
        keep = np.sort(np.argsort(-counts, kind="stable")[:max_items])
        remap = -np.ones(self.n_items, dtype=np.int64)
        remap[keep] = np.arange(len(keep))
        mask = remap[self.items] >= 0
        users_kept, user_idx = np.unique(self.users[mask], return_inverse=True)
        user_map = -np.ones(self.n_users, dtype=np.int64)
        user_map[users_kept] = np.arange(len(users_kept))
        return Dataset(
            name=f"{self.name}[top{max_items}]",
            item_ids=[self.item_ids[i] for i in keep],
            item_texts=[self.item_texts[i] for i in keep],
            item_images=[self.item_images[i] for i in keep],
            user_ids=[self.user_ids[u] for u in users_kept],
            users=user_idx.astype(np.int64),
            items=remap[self.items[mask]],
            timestamps=None if self.timestamps is None else self.timestamps[mask],
            weights=None if self.weights is None else self.weights[mask],
            provenance={**self.provenance, "max_items": max_items},
            seen_only=self._seen_only_kept(user_map, remap),
        )


def _file_sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def movielens_items(path: Path, tags: bool = False) -> tuple[list[str], list[str], list[Path | None]]:
    """MovieLens-posters' items: (IDs, texts = title + genres, poster paths or None). With ``tags``, the users' tags
    (``tags.csv``) join the text: interaction data, written after users watched (``DataSettings.item_tags``)."""
    path = Path(path)
    tags_file, tags = path / "tags.csv", {} if tags else None
    if tags is not None and tags_file.exists():
        with tags_file.open(newline="", encoding="utf-8") as f:
            for row in csv.DictReader(f):
                t = row["tag"].strip()
                bucket = tags.setdefault(row["movieId"], [])
                if t and t.lower() not in (x.lower() for x in bucket):
                    bucket.append(t)
    item_ids, texts, images = [], [], []
    with (path / "movies.csv").open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            mid = row["movieId"]
            genres = row["genres"].replace("|", ", ") if row["genres"] != "(no genres listed)" else ""
            text = f"{row['title']}. Genres: {genres}." if genres else f"{row['title']}."
            if tags and mid in tags:
                text += " Tags: " + ", ".join(tags[mid]) + "."
            poster = path / "posters" / f"{mid}.jpg"
            item_ids.append(mid)
            texts.append(text)
            images.append(poster if poster.exists() else None)
    return item_ids, texts, images


def load_movielens(path: Path, positive_threshold: float = 4.0, tags: bool = False) -> Dataset:
    """MovieLens latest-small with posters: positive = rating >= threshold, seen only = a lower rating; text = title +
    genres (+ the users' tags with ``tags``)."""
    path = Path(path)
    item_ids, texts, images = movielens_items(path, tags)
    item_index = {m: i for i, m in enumerate(item_ids)}
    u_raw, i_raw, ts, seen_u, seen_i = [], [], [], [], []
    with (path / "ratings.csv").open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            if row["movieId"] not in item_index:
                continue
            if float(row["rating"]) >= positive_threshold:
                u_raw.append(row["userId"])
                i_raw.append(item_index[row["movieId"]])
                ts.append(int(row["timestamp"]))
            else:
                seen_u.append(row["userId"])
                seen_i.append(item_index[row["movieId"]])
    return Dataset.from_rows(
        "movielens-posters",
        item_ids,
        texts,
        images,
        u_raw,
        i_raw,
        ts,
        {
            "dataset": "movielens-posters",
            "path": str(path),
            "positive_threshold": positive_threshold,
            "item_text": "title, genres" + (", users' tags" if tags else ""),
            "ratings_sha256": _file_sha(path / "ratings.csv"),
            "movies_sha256": _file_sha(path / "movies.csv"),
        },
        seen_rows=(seen_u, seen_i),
    )


def generic_items(path: Path) -> tuple[list[str], list[str], list[Path | None]]:
    """The generic format's ``items.csv``, checked: (IDs, texts, image paths or None)."""
    path = Path(path)
    item_ids, texts, images = [], [], []
    with (path / "items.csv").open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            img = (row.get("image") or "").strip()
            item_ids.append(row["item_id"])
            texts.append((row.get("text") or "").strip())
            images.append((path / img) if img else None)
    if len(set(item_ids)) != len(item_ids):
        raise ValueError(f"{path / 'items.csv'}: duplicate item_id")
    empty = [iid for iid, t, im in zip(item_ids, texts, images) if not t and im is None]
    if empty:
        raise ValueError(f"{path / 'items.csv'}: {len(empty)} items have neither text nor image, e.g. {empty[:5]}")
    missing = [str(im) for im in images if im is not None and not im.exists()]
    if missing:
        raise ValueError(f"{path / 'items.csv'}: {len(missing)} image files do not exist, e.g. {missing[:3]}")
    return item_ids, texts, images


def load_generic(path: Path, require_interactions: bool = True) -> Dataset:
    """The documented generic format (see module docstring); without ``require_interactions`` (a given ID space of
    items only, whose training reads no interactions) a directory without ``interactions.csv`` loads with none."""
    path = Path(path)
    item_ids, texts, images = generic_items(path)
    item_index = {m: i for i, m in enumerate(item_ids)}
    u_raw, i_raw, ts, ws, seen_u, seen_i = [], [], [], [], [], []
    if not require_interactions and not (path / "interactions.csv").exists():
        return Dataset.from_rows(
            path.name,
            item_ids,
            texts,
            images,
            [],
            [],
            [],
            {"dataset": "generic", "path": str(path), "items_sha256": _file_sha(path / "items.csv")},
            weights=[],
        )
    with (path / "interactions.csv").open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        has_ts = "timestamp" in (reader.fieldnames or [])
        has_w = "weight" in (reader.fieldnames or [])
        for row in reader:
            w = float(row["weight"]) if has_w and row["weight"] else 1.0
            if row["item_id"] not in item_index:
                continue
            if w <= 0:
                seen_u.append(row["user_id"])
                seen_i.append(item_index[row["item_id"]])
                continue
            u_raw.append(row["user_id"])
            i_raw.append(item_index[row["item_id"]])
            ts.append(int(float(row["timestamp"])) if has_ts and row["timestamp"] else 0)
            ws.append(w)
    return Dataset.from_rows(
        path.name,
        item_ids,
        texts,
        images,
        u_raw,
        i_raw,
        ts,
        {
            "dataset": "generic",
            "path": str(path),
            "interactions_sha256": _file_sha(path / "interactions.csv"),
            "items_sha256": _file_sha(path / "items.csv"),
        },
        weights=ws,
        seen_rows=(seen_u, seen_i),
    )


def load_dataset(settings, require_interactions: bool = True) -> Dataset:
    """Load the dataset the settings name, sliced to ``max_items`` when set."""
    if settings.data_format == "movielens":
        ds = load_movielens(settings.data_dir, settings.positive_threshold, settings.item_tags)
    else:
        ds = load_generic(settings.data_dir, require_interactions)
    if settings.max_items:
        ds = ds.most_popular(settings.max_items)
    return ds
