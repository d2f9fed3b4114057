"""A generated product catalogue in the generic format: sparse purchases and near-duplicate variants.

The regime of issue 21 (a fashion-retail sample where the default lost to content-kNN), without
real data: products come in colour variants that share everything but the colour; each user buys a
handful of articles; what a user buys depends on the product's style, category and material (all
in the text; category, colour and pattern also in the picture) and on the product's popularity.
So the ID space is thin, neighbours by content are often a sibling variant, and neither modality
alone carries everything.

    python -m models.synthetic_catalogue OUT_DIR [--seed 0] [--products 700] [--users 1000]

writes ``items.csv``, ``interactions.csv`` and ``images/*.png`` (a few MB), loadable with
``--format generic``. The same arguments always give the same files.
"""

from __future__ import annotations

import argparse
import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

CATEGORIES = (
    "dress",
    "shirt",
    "trousers",
    "sneakers",
    "boots",
    "handbag",
    "hat",
    "scarf",
    "jacket",
    "skirt",
    "sweater",
    "backpack",
)
STYLES = ("sporty", "formal", "casual", "vintage", "bohemian", "minimalist", "streetwear", "elegant")
MATERIALS = ("cotton", "wool", "leather", "denim", "linen", "polyester")
PATTERNS = ("plain", "striped", "dotted", "checked", "floral")
COLOURS = {
    "black": (20, 20, 20),
    "white": (235, 235, 235),
    "red": (200, 30, 40),
    "navy": (20, 30, 110),
    "green": (40, 140, 60),
    "beige": (215, 195, 160),
    "grey": (128, 128, 128),
    "pink": (235, 140, 170),
    "yellow": (235, 200, 40),
    "brown": (120, 75, 40),
}
SYLLABLES = ("al", "va", "no", "ri", "ka", "lu", "mi", "sa", "to", "ve", "ne", "or", "in", "da", "el", "ta")


@dataclass
class CatalogueSpec:
    products: int = 700  # each has 1-6 colour variants (about 2,400 articles at the default)
    users: int = 1000
    purchases: float = 8.0  # mean purchases per user (Poisson, at least 2)
    image_size: int = 96
    seed: int = 0


def _name(rng: np.random.Generator) -> str:
    return "".join(rng.choice(SYLLABLES, size=rng.integers(2, 4))).capitalize()


def _draw(category: int, colour: tuple[int, int, int], pattern: int, size: int) -> Image.Image:
    """A flat picture: the category's silhouette in the article's colour, with its pattern on top."""
    img = Image.new("RGB", (size, size), (250, 250, 250))
    d = ImageDraw.Draw(img)
    s = size
    shapes = {
        0: [(s * 0.5, s * 0.1), (s * 0.8, s * 0.9), (s * 0.2, s * 0.9)],
        1: [(s * 0.2, s * 0.2), (s * 0.8, s * 0.2), (s * 0.8, s * 0.85), (s * 0.2, s * 0.85)],
        2: [
            (s * 0.3, s * 0.1),
            (s * 0.7, s * 0.1),
            (s * 0.75, s * 0.9),
            (s * 0.55, s * 0.9),
            (s * 0.5, s * 0.4),
            (s * 0.45, s * 0.9),
            (s * 0.25, s * 0.9),
        ],
        3: [(s * 0.1, s * 0.6), (s * 0.6, s * 0.5), (s * 0.9, s * 0.7), (s * 0.9, s * 0.8), (s * 0.1, s * 0.8)],
        4: [
            (s * 0.3, s * 0.1),
            (s * 0.55, s * 0.1),
            (s * 0.55, s * 0.6),
            (s * 0.85, s * 0.7),
            (s * 0.85, s * 0.85),
            (s * 0.3, s * 0.85),
        ],
        5: [(s * 0.2, s * 0.4), (s * 0.8, s * 0.4), (s * 0.75, s * 0.85), (s * 0.25, s * 0.85)],
        6: [(s * 0.15, s * 0.65), (s * 0.3, s * 0.3), (s * 0.7, s * 0.3), (s * 0.85, s * 0.65)],
        7: [(s * 0.1, s * 0.4), (s * 0.9, s * 0.3), (s * 0.9, s * 0.45), (s * 0.1, s * 0.55)],
        8: [(s * 0.2, s * 0.15), (s * 0.8, s * 0.15), (s * 0.9, s * 0.9), (s * 0.1, s * 0.9)],
        9: [(s * 0.35, s * 0.2), (s * 0.65, s * 0.2), (s * 0.85, s * 0.85), (s * 0.15, s * 0.85)],
        10: [
            (s * 0.1, s * 0.3),
            (s * 0.3, s * 0.15),
            (s * 0.7, s * 0.15),
            (s * 0.9, s * 0.3),
            (s * 0.8, s * 0.85),
            (s * 0.2, s * 0.85),
        ],
        11: [(s * 0.25, s * 0.15), (s * 0.75, s * 0.15), (s * 0.8, s * 0.9), (s * 0.2, s * 0.9)],
    }
    d.polygon(shapes[category], fill=colour)
    ink = tuple(255 - c for c in colour)
    if pattern == 1:
        for y in range(0, s, max(4, s // 12)):
            d.line([(0, y), (s, y)], fill=ink, width=1)
    elif pattern == 2:
        for y in range(4, s, s // 8):
            for x in range(4, s, s // 8):
                d.ellipse([x - 1, y - 1, x + 1, y + 1], fill=ink)
    elif pattern == 3:
        for v in range(0, s, s // 6):
            d.line([(v, 0), (v, s)], fill=ink)
            d.line([(0, v), (s, v)], fill=ink)
    elif pattern == 4:
        for y in range(8, s, s // 5):
            for x in range(8, s, s // 5):
                d.ellipse([x - 3, y - 3, x + 3, y + 3], outline=ink)
    # the silhouette only where the polygon is: re-mask the pattern
    mask = Image.new("L", (s, s), 0)
    ImageDraw.Draw(mask).polygon(shapes[category], fill=255)
    return Image.composite(img, Image.new("RGB", (s, s), (250, 250, 250)), mask)


def generate(out_dir: Path, spec: CatalogueSpec = CatalogueSpec()) -> Path:
    """Write the catalogue to ``out_dir`` (created) and return it."""
    rng = np.random.default_rng(spec.seed)
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    colours = list(COLOURS)
    items = []  # (item_id, text, image, product, category, style, material, colour)
    product_pop = rng.lognormal(0.0, 1.0, spec.products)
    for p in range(spec.products):
        cat, sty, mat, pat = (int(rng.integers(len(x))) for x in (CATEGORIES, STYLES, MATERIALS, PATTERNS))
        name = _name(rng)
        for c in rng.choice(len(colours), size=int(rng.integers(1, 7)), replace=False):
            iid = f"a{p:05d}-{c}"
            text = f"{name} {PATTERNS[pat]} {MATERIALS[mat]} {CATEGORIES[cat]} in {colours[c]}, {STYLES[sty]} style."
            path = Path("images") / f"{iid}.png"
            _draw(cat, COLOURS[colours[c]], pat, spec.image_size).save(out / path, optimize=True)
            items.append((iid, text, str(path), p, cat, sty, mat, int(c)))
    cat_of, sty_of, mat_of, col_of = (np.array([it[k] for it in items]) for k in (4, 5, 6, 7))
    pop = np.log(product_pop[np.array([it[3] for it in items])])
    with (out / "items.csv").open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["item_id", "text", "image"])
        w.writerows(it[:3] for it in items)
    with (out / "interactions.csv").open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["user_id", "item_id", "timestamp"])
        for u in range(spec.users):
            taste = (
                np.log(rng.dirichlet(np.full(len(STYLES), 0.3)))[sty_of]
                + np.log(rng.dirichlet(np.full(len(CATEGORIES), 0.5)))[cat_of]
                + 0.5 * np.log(rng.dirichlet(np.full(len(MATERIALS), 1.0)))[mat_of]
                + 0.3 * np.log(rng.dirichlet(np.full(len(colours), 1.0)))[col_of]
                + pop
            )
            p = np.exp(taste - taste.max())
            n = min(max(2, int(rng.poisson(spec.purchases))), len(items))
            for t, i in enumerate(rng.choice(len(items), size=n, replace=False, p=p / p.sum())):
                w.writerow([f"u{u:05d}", items[i][0], t])
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out_dir", type=Path)
    for field, default in CatalogueSpec().__dict__.items():
        p.add_argument(f"--{field.replace('_', '-')}", type=type(default), default=default)
    a = p.parse_args(argv)
    spec = CatalogueSpec(**{k: getattr(a, k) for k in CatalogueSpec().__dict__})
    print(generate(a.out_dir, spec))


if __name__ == "__main__":
    main()
