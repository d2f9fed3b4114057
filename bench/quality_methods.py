"""The methods ``bench/quality.py`` scores (baselines, the generator, its ablations, the diffusion rows) and how a run
is summarised over seeds: the JSON summary (mean, sample std, per-seed values), the markdown tables and the plot."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from seed_stats import mean_sd

from models.items.baseline_tuning import ENSEMBLED, TUNED

METRICS = ("recall@10", "ndcg@10", "recall@20", "ndcg@20")
HIT_RATES = ("hit_rate@20", "new_item_hit_rate@20", "new_item_share_of_positives")  # all scenario only
SCENARIOS = ("cold", "warm", "all")
TUNABLE = ("content-kNN", "CB2CF", "DropoutNet", "CLCRec")  # tuned on validation by models.items.baseline_tuning
TUNED_ROWS = tuple(f"{b}{suffix}" for b in TUNABLE for suffix in (TUNED, ENSEMBLED))
BASELINES = (
    "random",
    "popularity",
    "content-kNN",
    "CB2CF",
    "DropoutNet",
    "CLCRec",
    "skeleton MLP (BPR+MSE)",
    *TUNED_ROWS,
)
FULL = "proxy generator"  # the validation-chosen generator, on the validation-chosen ID model
ABLATIONS = {  # name -> settings changed from the full generator
    "w/o MoE (one linear expert)": {"proxy_experts": 1, "proxy_top_k": 1},
    "MoE top-2 (K=4, k=2)": {"proxy_top_k": 2},
    "whitening experts": {"proxy_expert_type": "whitening"},
    "w/o adaptive fusion (mean)": {"proxy_fusion": "mean"},
    "w/o alignment loss": {"lambda_align": 0.0},
    "w/o PAL": {"lambda_pal": 0.0},
    "coarse only": {"proxy_fine": False},
    "text only": {"proxy_modalities": "text"},
    "image only": {"proxy_modalities": "image"},
}
ROBUST = "full, 50% test images removed"
LIGHTGCN = "proxy generator (LightGCN)"
DIFFUSION = (
    "proxy + diffusion (average)",
    "proxy + diffusion + cold-aware gate",
    "  gate w/o augmentation",
    "  gate, diffusion w/o anchor (pure-noise start)",
)
CALIBRATED = "default: validation-chosen + calibration"  # what the package serves
METHODS = BASELINES + (CALIBRATED, FULL, LIGHTGCN, *ABLATIONS, ROBUST, *DIFFUSION)


def space_note(per_seed: list[dict]) -> str:
    """A line on the ID space every method was scored in, when it was a given one (``--id-space-dir``)."""
    spaces = [run["_choices"].get("id_space") for run in per_seed if "_choices" in run]
    if not spaces or not all(spaces):
        return ""
    made = [sp.get("made_by") or {} for sp in spaces]
    settings = "; ".join(f"regularisation {m.get('regularization')}, alpha {m.get('alpha')}" for m in made)
    return (
        f"\nIn an ID space coldproxy did not make: {made[0].get('model', 'given vectors')} "
        f"({made[0].get('factors')} factors) fitted on each seed's warm training interactions only, its settings "
        f"chosen on warm-validation NDCG@20 (per seed: {settings}); every method below is fitted to that space "
        "and scored on the same split, test reported only.\n"
    )


def summarise(per_seed: list[dict]) -> dict:
    out = {}
    for m in METHODS:
        runs = [run[m] for run in per_seed if m in run]
        if not runs:
            continue
        stats = lambda v: dict(zip(("mean", "std"), mean_sd(v))) | {"values": v.tolist()}  # noqa: E731
        out[m] = {
            sc: {
                k: stats(np.array([run[sc][k] for run in runs]))
                for k in METRICS + (HIT_RATES if sc == "all" else ())
                if k in runs[0][sc]
            }
            for sc in SCENARIOS
        }
    return out


def markdown(summary: dict, seeds: list[int]) -> str:
    lines = []
    for sc in SCENARIOS:
        lines += [
            f"\n**{sc}** scenario — mean ± sample std over seeds {seeds}\n",
            "| method | " + " | ".join(METRICS) + " |",
            "|---|" + "---|" * len(METRICS),
        ]
        for m, v in summary.items():
            lines.append(
                f"| {m} | " + " | ".join(f"{v[sc][k]['mean']:.4f} ± {v[sc][k]['std']:.4f}" for k in METRICS) + " |"
            )
    lines += [
        f"\n**all** scenario: share of positives reaching the user's top 20 (all; test-cold items) and the "
        f"test-cold items' share of the positives — mean ± sample std over seeds {seeds}\n",
        "| method | " + " | ".join(HIT_RATES) + " |",
        "|---|" + "---|" * len(HIT_RATES),
    ]
    for m, v in summary.items():
        if all(k in v["all"] for k in HIT_RATES):
            lines.append(
                f"| {m} | "
                + " | ".join(f"{v['all'][k]['mean']:.4f} ± {v['all'][k]['std']:.4f}" for k in HIT_RATES)
                + " |"
            )
    return "\n".join(lines) + "\n"


def plot(summary: dict, path: Path, dataset: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(summary)
    means = [summary[m]["cold"]["recall@20"]["mean"] for m in names]
    stds = [summary[m]["cold"]["recall@20"]["std"] for m in names]
    colors = [
        "#aaa" if m in BASELINES else "#e73" if m in (FULL, LIGHTGCN) else "#5a5" if m in DIFFUSION else "#79c"
        for m in names
    ]
    fig, ax = plt.subplots(figsize=(11, 4.5))
    ax.bar(range(len(names)), means, yerr=stds, capsize=3, color=colors)
    ax.set_xticks(range(len(names)), names, rotation=35, ha="right", fontsize=8)
    ax.set_ylabel("cold Recall@20")
    ax.set_title(
        f"{dataset} item cold-start: baselines (grey), generator (orange), ablations (blue), "
        "diffusion + gate (green); mean ± std",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=120)
