"""Real request payloads: from the MovieLens-posters folder, posters + texts for ingestion and the
user and movie IDs for reads and ranking; from Youshu, real bundles' member lists for bundle
ingestion and the bundle and user IDs. Read with the standard library only (no torch, no models)."""

from __future__ import annotations

import csv
import random
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Payloads:
    items: list[tuple[str, str, Path | None]]  # (movie id, text, poster path)
    users: list[str]

    @classmethod
    def from_movielens(cls, path: Path, seed: int = 0) -> "Payloads":
        path = Path(path)
        items = []
        with (path / "movies.csv").open(newline="", encoding="utf-8") as f:
            for row in csv.DictReader(f):
                poster = path / "posters" / f"{row['movieId']}.jpg"
                text = f"{row['title']}. Genres: {row['genres'].replace('|', ', ')}."
                items.append((row["movieId"], text, poster if poster.exists() else None))
        with (path / "ratings.csv").open(newline="", encoding="utf-8") as f:
            users = sorted({row["userId"] for row in csv.DictReader(f)}, key=int)
        random.Random(seed).shuffle(items)
        return cls(items, users)


@dataclass
class BundlePayloads:
    bundles: list[tuple[str, list[str]]]  # (Youshu bundle id, its member item ids)
    users: list[str]

    @classmethod
    def from_youshu(cls, path: Path, seed: int = 0) -> "BundlePayloads":
        path = Path(path)
        members: dict[str, list[str]] = {}
        for line in (path / "bundle_item.txt").read_text().splitlines():
            b, i = line.split()[:2]
            members.setdefault(b, []).append(i)
        n_users = int((path / "Youshu_data_size.txt").read_text().split()[0])
        bundles = list(members.items())
        random.Random(seed).shuffle(bundles)
        return cls(bundles, [str(u) for u in range(n_users)])
