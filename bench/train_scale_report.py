"""The tables, exponents and plots of ``bench/train_scale.py``: the whole pipeline's rows (per stage, per size) and the
ID model's seconds per epoch, written as JSON, Markdown and a log-log PNG under ``bench/results/``."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from results_dir import RESULTS

BEFORE = {"id_steps_per_epoch": 0, "proxy_steps_per_epoch": 0, "gate_steps_per_epoch": 0}  # no step budget anywhere
STAGES = ("features", "id_model", "proxy", "diffusion+gate", "calibration", "evaluation", "export")


def write_pipeline(rows: list[dict], name: str, command: str) -> None:
    """The pipeline's JSON, Markdown and PNG from its rows (``--pipeline-rows FILE`` rewrites them from the rows a
    run printed, one JSON object a line)."""
    rows = sorted((r | {"seconds": r["seconds"] | {"total": r["total_s"]}} for r in rows), key=lambda r: r["positives"])
    modes = list(dict.fromkeys(r["mode"] for r in rows))
    stage_exp = {
        m: {
            st: fit([(r["train_positives"], r["seconds"][st]) for r in rows if r["mode"] == m])
            for st in STAGES + ("total",)
        }
        for m in modes
    }
    out = {"command": command, "cores": os.cpu_count(), "exponents": stage_exp, "rows": rows}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(out, indent=2))
    plot_pipeline(rows, RESULTS / f"{name}.png")
    md = [
        f"# Whole training pipeline against the log's size ({os.cpu_count()} cores)",
        "",
        f"Command: `{out['command']}`",
        "",
        "The generated catalogue (`models/synthetic_catalogue.py`, about 3,100 articles with text and a picture, 50 "
        "purchases a user) at each size; `coldproxy train` + `coldproxy export` in-process, a fresh feature cache "
        "each "
        "run. `before`: no step budget in any stage (`" + json.dumps(BEFORE) + "`); `default`: today's settings.",
        "",
        "Fitted exponent of seconds against training positives (log-log slope):",
        "",
        "| mode | " + " | ".join(STAGES) + " | total |",
        "|---|" + "---|" * (len(STAGES) + 1),
    ]
    md += [f"| {m} | " + " | ".join(str(e[st]) for st in STAGES + ("total",)) + " |" for m, e in stage_exp.items()]
    md += [
        "",
        "| positives (train) | mode | "
        + " | ".join(f"{st} (s)" for st in STAGES)
        + " | total (s) | epochs run (best) | "
        "peak RSS (MB) | warm-val NDCG@20 | val-cold NDCG@20 (served) | `coldproxy train`'s estimate (s) |",
        "|" + "---|" * (len(STAGES) + 8),
    ]
    for r in rows:
        ep = ", ".join(f"{k} {v}" for k, v in r["epochs_run(best)"].items())
        md.append(
            f"| {r['train_positives']:,} | {r['mode']} | "
            + " | ".join(str(r["seconds"][st]) for st in STAGES)
            + f" | {r['total_s']} | {ep} | {r['peak_rss_mb']} | {r['warm_val_ndcg@20']} | "
            f"{r['val_cold_ndcg@20']} ({r['served']}) "
            f"| {r['estimate_s']} |"
        )
    (RESULTS / f"{name}.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


def fit(points: list[tuple[float, float]]) -> float | None:
    """Log-log slope of seconds against positives (None under two sizes)."""
    pts = sorted(set(points))
    if len(pts) < 2 or min(p[1] for p in pts) <= 0:
        return None
    return round(float(np.polyfit(np.log([p[0] for p in pts]), np.log([p[1] for p in pts]), 1)[0]), 2)


def plot_pipeline(rows: list[dict], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    modes = list(dict.fromkeys(r["mode"] for r in rows))
    fig, axes = plt.subplots(1, len(modes), figsize=(5.5 * len(modes), 4.2), squeeze=False, sharey=True)
    for ax, mode in zip(axes[0], modes):
        mine = sorted((r for r in rows if r["mode"] == mode), key=lambda r: r["train_positives"])
        for st in STAGES + ("total",):
            pts = [(r["train_positives"], r["seconds"][st]) for r in mine if r["seconds"][st] > 0]
            if pts:
                ax.loglog(*zip(*pts), "o-", lw=2.5 if st == "total" else 1.2, label=f"{st} ({fit(pts)})")
        ax.set_title(mode)
        ax.set_xlabel("training positives")
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel("seconds")
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def exponent(rows: list[dict]) -> float | None:
    return fit([(r["train_positives"], r["seconds_per_epoch"]) for r in rows])


def plot(rows: list[dict], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4))
    for mode in dict.fromkeys(r["mode"] for r in rows):
        pts = sorted({(r["train_positives"], r["seconds_per_epoch"]) for r in rows if r["mode"] == mode})
        ax.loglog(*zip(*pts), "o-", label=f"{mode} (slope {exponent([r for r in rows if r['mode'] == mode])})")
    ax.set_xlabel("training positives")
    ax.set_ylabel("ID model: seconds per epoch")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def epochs_of(history: list[dict], key: str) -> str:
    """ "run (best)" of a stage's log."""
    scored = [h for h in history if key in h]  # the diffusion expert is validated every eval_every epochs
    if not scored:
        return ""
    return f"{len(history)} ({max(scored, key=lambda h: h[key])['epoch']})"
