"""The results page's item runs (``bench/quality.py``'s JSON): the method rows, each seed's best baseline (untuned or
tuned on validation) and the paired gain over it, and what each baseline's tuning chose."""

from __future__ import annotations

import numpy as np
from quality_methods import TUNED_ROWS
from seed_stats import mean_sd_text as stats

from models.items.baseline_tuning import grid

DEFAULT = "default: validation-chosen + calibration"  # what a package serves (bench/quality.py CALIBRATED)
GENERATOR = "proxy generator"
UNTUNED = ("popularity", "random", "content-kNN", "CB2CF", "DropoutNet", "CLCRec")
BASELINES = (*UNTUNED, *TUNED_ROWS)  # the tuned rows: models/items/baseline_tuning.py


def seeds_of(values: list[float]) -> str:
    return " / ".join(f"{x:.4f}" for x in values)


def metric(run: dict, method: str, scenario: str, name: str) -> list[float] | None:
    vals = [seed.get(method, {}).get(scenario, {}).get(name) for seed in run["per_seed"]]
    return None if any(v is None for v in vals) else vals


def item_section(name: str, title: str, how: str, run: dict | None) -> list[str]:
    """One item run's section: every method's row, the paired gain over each seed's best baseline, what the tuning
    chose."""
    if run is None:
        return [f"## {title}", "", f"Not measured yet (`bench/results/{name}.json` is missing).", ""]
    seeds = run["seeds"]
    out = [
        f"## {title}",
        "",
        f"Seeds {', '.join(map(str, seeds))}; test split, reported only; {how}. Source: `bench/results/{name}.json`.",
        "",
        "| method | cold Recall@20 | cold NDCG@20 | all-items Recall@20 | all-items NDCG@20 | cold Recall@20 per "
        "seed |",
        "|---|---|---|---|---|---|",
    ]
    methods = [m for m in (DEFAULT, GENERATOR, *BASELINES) if metric(run, m, "cold", "recall@20") is not None]
    for m in methods:
        cells = [
            metric(run, m, s, k)
            for s, k in (("cold", "recall@20"), ("cold", "ndcg@20"), ("all", "recall@20"), ("all", "ndcg@20"))
        ]
        label = f"**{m}**" if m == DEFAULT else m
        out.append(f"| {label} | " + " | ".join(stats(c) if c else "–" for c in cells) + f" | {seeds_of(cells[0])} |")
    out += ["", paired(run, [m for m in methods if m in BASELINES]), ""]
    if any(m in TUNED_ROWS for m in methods):
        out += [tuning_note(run), ""]
    return out


def describe_point(family: str, point: dict) -> str:
    """A grid point of models/items/baseline_tuning.py in words: for a neural family what it moved from the untuned
    point."""
    if family == "content-kNN":
        t = point["temperature"]
        return f"{point['neighbours']} neighbours, " + ("uniform" if t is None else f"softmax / {t}")
    untuned = grid(family)[0]
    words = {"proxy_hidden": "width {}", "proxy_lr": "lr {:g}", "proxy_dropout": "dropout {}"}
    moved = [words[k].format(v) for k, v in point.items() if k in words and v != untuned[k]]
    if point.get("with_warm_norm", untuned.get("with_warm_norm")) != untuned.get("with_warm_norm"):
        moved.append("warm norm" if point["with_warm_norm"] else "own norm")
    return ", ".join(moved) or "untuned"


def tuning_note(run: dict) -> str:
    """What the tuning chose, per family and seed (once where every seed chose the same)."""
    chosen = []
    for family in ("content-kNN", "CB2CF", "DropoutNet", "CLCRec"):
        records = [seed.get("_tuning", {}).get(family) for seed in run["per_seed"]]
        if all(records):
            points = [describe_point(family, r["chosen"]) for r in records]
            sizes = sorted({len(r["grid"]) for r in records})
            said = f"{points[0]} on every seed" if len(set(points)) == 1 else " / ".join(points)
            chosen.append(f"{family} ({' or '.join(map(str, sizes))} points): {said}")
    return (
        "Tuned rows: each family's grid point with the best validation-cold NDCG@20 per seed, as what it moved from "
        "the untuned point "
        "(`models/items/baseline_tuning.py`, the grid fixed before the runs): " + "; ".join(chosen) + "."
    )


def best_baseline(run: dict, baselines: list[str]) -> list[tuple[float, str]]:
    """Each seed's best baseline on cold Recall@20: (its value, its name)."""
    n = len(run["per_seed"])
    return [max((metric(run, b, "cold", "recall@20")[i], b) for b in baselines) for i in range(n)]


def paired(run: dict, baselines: list[str]) -> str:
    """The default against each seed's best baseline on cold Recall@20, per seed."""
    if not baselines or metric(run, DEFAULT, "cold", "recall@20") is None:
        return "No baseline was run beside the default on these seeds."
    default = metric(run, DEFAULT, "cold", "recall@20")
    best = best_baseline(run, baselines)
    diffs = [d - b for d, (b, _) in zip(default, best)]
    per_seed = ", ".join(f"{d:+.4f} ({name})" for d, (_, name) in zip(diffs, best))
    return (
        f"Paired against each seed's best baseline on cold Recall@20: {per_seed}; mean {np.mean(diffs):+.4f}, "
        f"ratio {np.mean(default) / np.mean([b for b, _ in best]):.2f}x."
    )
