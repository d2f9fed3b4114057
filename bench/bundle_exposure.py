"""Whether content decides which new bundles users see (issue 56): a served bundle package, its real held-out new
bundles posted (those without interactions in its split: their member items, embedded as ``POST /v1/bundles`` embeds
them) beside content-free bundles (random member items at three sizes, and one group drawn by item popularity), then
every tune user's top 20 (their training bundles left out, as the service does). Per group: its share of the slots
over its share of the catalogue (the exposure ratio: 1 is fair, 48 is what an editor's noise reached with the cold
package) and how many users see one of its bundles first.

    python bench/bundle_exposure.py [--package artifacts/bundle_package ...] [--per-size 20] [--seed 0]
    # -> bench/results/bundle_exposure.{json,md}
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from results_dir import RESULTS
from tqdm.auto import tqdm

from coldproxy.bundle_package import BundleEmbedder, BundlePackage, load_bundle_package
from coldproxy.config import BundleSettings
from models.bundles.data import BundleData, load_youshu
from models.evaluate import top_columns

REAL = "real new bundles (held out)"
WARM = "warm bundles (the package's)"
WITH_REAL, NOISE_ONLY = "noise beside the real new bundles", "noise alone (a fresh deployment)"


def noise_groups(d: BundleData, real_sizes: np.ndarray, per_size: int, rng: np.random.Generator) -> dict:
    """Content-free bundles: ``per_size`` of random items at 3 members, at the real new bundles' median and at their
    90th percentile, and ``per_size`` of items drawn by popularity (what a spammer who knows the best sellers posts)
    at the median size."""
    sizes = {"3": 3, "median": int(np.median(real_sizes)), "p90": int(np.percentile(real_sizes, 90))}
    out = {
        f"random items, {n} members ({name})": [rng.choice(d.n_items, n, replace=False) for _ in range(per_size)]
        for name, n in sizes.items()
    }
    pop = d.item_counts().astype(float) + 1.0
    out[f"popular items, {sizes['median']} members (median)"] = [
        rng.choice(d.n_items, sizes["median"], replace=False, p=pop / pop.sum()) for _ in range(per_size)
    ]
    return out


def exposure(
    package: BundlePackage,
    d: BundleData,
    groups: dict[str, list[np.ndarray]],
    length: int = 20,
    chunk: int = 1024,
    progress: bool = True,
) -> dict:
    """Each group's slots in the tune users' top ``length`` over the package's warm bundles and every group's
    posted bundles (embedded by the package's ``BundleEmbedder``), the users' training bundles left out."""
    embedder = BundleEmbedder(package)
    a = package.arrays
    vectors = [a["bundle_emb"]]
    labels = [np.zeros(len(a["bundle_emb"]), np.int64)]
    names = [WARM, *groups]
    for g, name in enumerate(groups, start=1):
        members = groups[name]
        for s in range(0, len(members), 512):
            vectors.append(embedder.embed([np.unique(m) for m in members[s : s + 512]]).embedding)
        labels.append(np.full(len(members), g))
    B, label = np.concatenate(vectors).astype(np.float32), np.concatenate(labels)
    users = np.unique(d.tune.users)
    row = {u: i for i, u in enumerate(a["user_ids"].astype(str))}
    U = a["user_emb"][[row[str(u)] for u in users]]
    none = (np.zeros(len(row) + 1, np.int64), np.zeros(0, np.int64))  # a package exported before the seen table
    indptr, seen = package.seen if package.seen is not None else none
    slots, first = np.zeros(len(names), np.int64), np.zeros(len(names), np.int64)
    for s in tqdm(range(0, len(users), chunk), desc="top 20 of the tune users", disable=not progress):
        scores = U[s : s + chunk] @ B.T
        for i, u in enumerate(users[s : s + chunk]):
            r = row[str(u)]
            scores[i, seen[indptr[r] : indptr[r + 1]]] = -np.inf  # warm bundles come first in B: rows match
        top = top_columns(scores, length)  # best first
        slots += np.bincount(label[top].ravel(), minlength=len(names))
        first += np.bincount(label[top[:, 0]], minlength=len(names))
    size = np.bincount(label, minlength=len(names))
    out = {}
    for g, name in enumerate(names):
        slot_share, catalogue_share = slots[g] / slots.sum(), size[g] / size.sum()
        out[name] = {
            "bundles": int(size[g]),
            "catalogue_share": float(catalogue_share),
            "slot_share": float(slot_share),
            "exposure_ratio": float(slot_share / catalogue_share),
            "first_for_users": int(first[g]),
            "first_per_60_users": float(60 * first[g] / len(users)),
        }
    return {"users": int(len(users)), "list_length": length, "groups": out}


def measure(package_dir: Path, per_size: int, seed: int, progress: bool = True) -> dict:
    package = load_bundle_package(package_dir)
    scenario = package.manifest.scenario
    d = load_youshu(BundleSettings().data_dir, scenario)
    held_out = np.flatnonzero(d.bundle_counts() == 0)  # without interactions in the package's split: never seen
    members = d.members()
    real = [members[b] for b in held_out]
    noise = noise_groups(d, np.array([len(m) for m in real]), per_size, np.random.default_rng(seed))
    out = {
        "package": str(package_dir),
        "package_version": package.version,
        "scenario": scenario,
        "training_seed": package.manifest.provenance.get("seed"),
        "test_metrics": package.manifest.metrics["test"],
        "calibration": package.manifest.calibration.model_dump(),
        "per_size": per_size,
        "seed": seed,
    }
    # the real new bundles posted beside the noise, and the noise alone: a fresh deployment whose first new bundles
    # are an editor's
    return out | {
        "pools": {
            pool: exposure(package, d, groups, progress=progress)
            for pool, groups in ((WITH_REAL, {REAL: real} | noise), (NOISE_ONLY, noise))
        }
    }


def table(runs: list[dict]) -> list[str]:
    """One markdown table: every package's pools and groups."""
    lines = [
        "| package (scenario, seed) | posted | group | bundles | catalogue share | slot share | exposure ratio | "
        "#1 for users (per 60) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        for pool, by in r["pools"].items():
            for name, g in by["groups"].items():
                lines.append(
                    f"| {r['package_version']} ({r['scenario']}, {r['training_seed']}) | {pool} | {name} | "
                    f"{g['bundles']} | {g['catalogue_share']:.4f} | {g['slot_share']:.4f} | "
                    f"{g['exposure_ratio']:.2f} | {g['first_for_users']} ({g['first_per_60_users']:.2f}) |"
                )
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--package",
        type=Path,
        nargs="+",
        default=[BundleSettings().package_dir],
        help="bundle packages (one per training seed, say)",
    )
    p.add_argument("--per-size", type=int, default=20, help="content-free bundles per group")
    p.add_argument("--seed", type=int, default=0, help="draws the content-free bundles")
    p.add_argument("--name", default="bundle_exposure", help="results file stem")
    a = p.parse_args()
    t = time.time()
    runs = [measure(package, a.per_size, a.seed) for package in a.package]
    report = {
        "command": "python bench/bundle_exposure.py --package " + " ".join(map(str, a.package)),
        "runs": runs,
        "seconds": time.time() - t,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{a.name}.json").write_text(json.dumps(report, indent=2))
    head = (
        f"Top 20 of every tune user ({runs[0]['pools'][NOISE_ONLY]['users']} in the first package's split), "
        f"{a.per_size} content-free bundles a group; `{report['command']}`"
    )
    (RESULTS / f"{a.name}.md").write_text("\n".join([head, "", *table(runs)]) + "\n")
    print(head, *table(runs), sep="\n")


if __name__ == "__main__":
    main()
