"""Bundle backbone (stage 1 alone) under CrossCBR's settings, one at a time and together (issue 16).

Each variant trains the two-view prior (``models.bundles.backbone.train_prior``) on a Youshu
scenario and reports its best tune NDCG@20 (what would choose between them) and test Recall/NDCG@20
(what is reported), with the paired per-seed difference against CrossCBR as published (the served
default until 4 negatives per triple became the default) or, for "before" (the defaults before
CrossCBR's settings) and the rows built on it, against "before".

    python bench/bundle_backbone.py [--scenario warm] [--seeds 0 1 2] [--variants ...] [--out runs.jsonl]
    python bench/bundle_backbone.py --merge runs.jsonl [more.jsonl ...]

A run appends one JSON line per (seed, variant) to ``--out``; ``--merge`` writes
bench/results/bundle_backbone.{json,md,png}.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from results_dir import RESULTS
from seed_stats import mean_sd

from coldproxy.config import BundleSettings
from models.bundles.backbone import evaluate, train_prior, view_scores
from models.bundles.data import load_youshu
from models.training import nth_seed

# the defaults before CrossCBR's settings, spelled out: the rows measured against them stay what they were after the
# defaults moved
BEFORE = {
    "lightgcn_layers": 2,
    "id_lr": 5e-3,
    "init": "normal",
    "id_weight_decay": 0.0,
    "id_reg": 1e-4,
    "item_bpr_weight": 1.0,
    "contrast_weight": 0.04,
    "shared_user_table": False,
    "layer_combine": "mean",
    "edge_dropout": 0.0,
    "bpr_negatives": 1,
}
CROSSCBR = {"edge_dropout": 0.2, "layer_combine": "normalised_sum", "shared_user_table": True}
PRIORS = "priors"  # not a setting: that many stage-1 priors (seeds nth_seed(seed, j)), their scores summed
NEG4 = "  with 4 negatives per triple"
OLD = "before (2 layers, lr 5e-3, mean of layers, a user table per view)"
PUBLISHED = "CrossCBR as published (its settings + Xavier, weight decay, no item BPR, contrast 0.04 averaged)"
VARIANTS = {  # name -> BundleSettings overrides; the first (the served default until 4 negatives per triple became
    # the default) is the paired differences' base
    PUBLISHED: {"bpr_negatives": 1},
    "  - Xavier init (N(0, 0.1))": {"init": "normal"},
    "  - weight decay (batch L2 1e-4)": {"id_weight_decay": 0.0, "id_reg": 1e-4},
    "  - edge dropout": {"edge_dropout": 0.0},
    "  + item-level BPR (MoDiffE eq. 2)": {"item_bpr_weight": 1.0},
    "  with 2 layers": {"lightgcn_layers": 2},
    "  with at most 200 epochs": {"id_epochs": 200},
    NEG4: {"bpr_negatives": 4},
    "  with 8 negatives per triple": {"bpr_negatives": 8},
    "  with 4 negatives, at most 200 epochs": {"bpr_negatives": 4, "id_epochs": 200},
    "  with 4 negatives, 128 dimensions": {"bpr_negatives": 4, "dim": 128},
    "  with 4 negatives, 2 priors' scores summed": {"bpr_negatives": 4, PRIORS: 2},
    "  with 4 negatives, contrast temperature 0.2": {"bpr_negatives": 4, "contrast_temp": 0.2},
    "  with 4 negatives, contrast weight 0.04 each": {"bpr_negatives": 4, "contrast_weight": 0.04},
    "  with 4 negatives, contrast temperature 0.3": {"bpr_negatives": 4, "contrast_temp": 0.3},
    "  with 4 negatives, lr 2e-3": {"bpr_negatives": 4, "id_lr": 2e-3},
    "  with 4 negatives, batch 1024": {"bpr_negatives": 4, "id_batch": 1024},
    OLD: BEFORE,
    "+ edge dropout 0.2": BEFORE | {"edge_dropout": 0.2},
    "+ normalised layer sum": BEFORE | {"layer_combine": "normalised_sum"},
    "+ shared user table": BEFORE | {"shared_user_table": True},
    "+ shared user table + edge dropout": BEFORE | {"shared_user_table": True, "edge_dropout": 0.2},
    "+ all three": BEFORE | CROSSCBR,
    "CrossCBR's settings (all three, 1 layer, lr 1e-3)": BEFORE | CROSSCBR | {"lightgcn_layers": 1, "id_lr": 1e-3},
    "+ Adam weight decay 1e-4 instead of the batch L2": BEFORE | {"id_weight_decay": 1e-4, "id_reg": 0.0},
    "+ Xavier init + normalised layer sum": BEFORE | {"init": "xavier", "layer_combine": "normalised_sum"},
}
BASE = next(iter(VARIANTS))


def reference(variant: str) -> str:
    """The row a variant's paired differences are taken against: CrossCBR as published (the first); for the rows built
    on 4 negatives (the served default since), that row; for the rows built on the earlier defaults, those."""
    at = list(VARIANTS).index
    if variant != OLD and at(variant) > at(OLD):
        return OLD
    return NEG4 if at(NEG4) < at(variant) < at(OLD) else BASE


def run(scenario: str, seed: int, variant: str, progress: bool) -> dict:
    over = dict(VARIANTS[variant])
    n_priors = over.pop(PRIORS, 1)
    d = load_youshu(BundleSettings().data_dir, scenario)
    t, priors = time.time(), []
    for j in range(n_priors):
        prior, log = train_prior(d, BundleSettings(scenario=scenario, seed=nth_seed(seed, j), **over), progress)
        priors.append(prior)
        if j == 0:
            first = log

    def scores(us: np.ndarray) -> np.ndarray:
        return sum(view_scores(us, p.uB, p.bB, p.uI, p.bI) for p in priors)

    m = evaluate(d, d.test, scores)
    tune = first["best_tune_ndcg@20"] if n_priors == 1 else evaluate(d, d.tune, scores)["ndcg@20"]
    best = max(first["history"], key=lambda r: r["tune_ndcg@20"])
    return {
        "scenario": scenario,
        "seed": seed,
        "variant": variant,
        "tune_ndcg@20": tune,
        "best_epoch": best["epoch"],
        "epochs_run": first["history"][-1]["epoch"],
        "recall@20": float(m["recall@20"]),
        "ndcg@20": float(m["ndcg@20"]),
        "seconds": time.time() - t,
    }


def merge(rows: list[dict]) -> dict:
    table: dict = {}
    for sc in sorted({r["scenario"] for r in rows}):
        by = {(r["variant"], r["seed"]): r for r in rows if r["scenario"] == sc}
        seeds = sorted({s for _, s in by})
        for v in VARIANTS:
            if not all((v, s) in by for s in seeds):
                continue
            entry = {m: [by[v, s][m] for s in seeds] for m in ("tune_ndcg@20", "recall@20", "ndcg@20")}
            ref = reference(v)
            entry["reference"] = ref
            entry["minus_reference"] = {
                m: [by[v, s][m] - by[ref, s][m] for s in seeds] for m in entry if m != "reference"
            }
            entry["best_epoch"] = [by[v, s]["best_epoch"] for s in seeds]
            table.setdefault(sc, {"seeds": seeds, "variants": {}})["variants"][v] = entry
    return table


def write(table: dict) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "bundle_backbone.json").write_text(json.dumps(table, indent=2))
    lines = []
    for sc, t in table.items():
        lines += [
            f"**{sc}** scenario, seeds {t['seeds']}: mean over seeds; Δ = paired per-seed difference against the "
            "first row, CrossCBR as published (served until 4 negatives became the default; for the rows "
            "built on 4 negatives, against that row; for 'before' and the rows below it, against 'before'); "
            "tune chooses, test reports",
            "",
            "| stage 1 | tune NDCG@20 | Δ tune per seed | test R@20 | test N@20 | Δ test R@20 per seed | best epoch |",
            "|---|---|---|---|---|---|---|",
        ]
        for v, e in t["variants"].items():
            d = e["minus_reference"]
            lines.append(
                f"| {v} | {np.mean(e['tune_ndcg@20']):.4f} | "
                f"{' / '.join(f'{x:+.4f}' for x in d['tune_ndcg@20'])} | "
                f"{np.mean(e['recall@20']):.4f} | {np.mean(e['ndcg@20']):.4f} | "
                f"{' / '.join(f'{x:+.4f}' for x in d['recall@20'])} | {e['best_epoch']} |"
            )
        lines.append("")
    (RESULTS / "bundle_backbone.md").write_text("\n".join(lines))
    print("\n".join(lines))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(table), figsize=(7 * len(table), 4), squeeze=False)
    for ax, (sc, t) in zip(axes[0], table.items()):
        names = list(t["variants"])
        for k, metric in enumerate(("tune_ndcg@20", "recall@20")):
            means, sds = zip(*(mean_sd(t["variants"][v][metric]) for v in names))
            ax.barh(
                np.arange(len(names)) + 0.4 * k,
                means,
                0.4,
                xerr=sds,
                label=f"{'tune NDCG@20' if k == 0 else 'test Recall@20'}",
            )
        ax.set_yticks(np.arange(len(names)) + 0.2, [n.split(" (")[0] for n in names], fontsize=8)
        ax.invert_yaxis()
        ax.set(title=f"Youshu {sc}: bundle backbone (stage 1) variants", xlabel="mean ± sample std over seeds")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(RESULTS / "bundle_backbone.png", dpi=110)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scenario", default="warm", choices=["cold", "warm", "all"])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS), metavar="VARIANT")
    p.add_argument("--out", type=Path, default=RESULTS / "bundle_backbone_runs.jsonl")
    p.add_argument("--merge", nargs="*", type=Path, help="runs' JSON-lines files to tabulate")
    p.add_argument("--quiet", action="store_true")
    a = p.parse_args()
    if a.merge:
        write(merge([json.loads(line) for f in a.merge for line in f.read_text().splitlines() if line.strip()]))
        return
    a.out.parent.mkdir(parents=True, exist_ok=True)
    for seed in a.seeds:
        for v in a.variants:
            row = run(a.scenario, seed, v, not a.quiet)
            print(json.dumps(row), flush=True)
            with a.out.open("a") as f:
                f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
