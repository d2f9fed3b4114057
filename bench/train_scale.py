"""Training cost against the size of the interaction log (issue 40): how the ID model's time grows with the data.

Logs are generated from a known latent model (``latent_log``): 3,000 items with a popularity bias and 16 latent
factors, users with factors of their own, each drawing about 50 distinct items from a softmax over their scores
(Gumbel top-k), so a log of N positives has N / 50 users. Each log is split as every training is
(``models.data.cold_start_split``) and the ID model (LightGCN, today's settings) is trained on it:

* ``unbounded``: today's training, ``id_batch`` triples a step, every triple each epoch: an epoch takes
  positives / id_batch steps and each step propagates over the whole graph, so its cost grows with the square;
* ``bounded``: ``id_steps_per_epoch`` caps the steps (the batch grows with the data), the learning rate scaled by
  (batch / id_batch)^``id_lr_batch_power``.

For each (size, mode, seed): seconds per epoch (the BPR steps, evaluation left out), epochs run and the
early-stopping best, total seconds, peak RSS, and warm-validation NDCG@20 (the ID model's own early-stopping
metric). Sizes in ``--timing-only`` run ``--timing-epochs`` epochs only (per-epoch cost, no convergence). The fitted
exponent of seconds per epoch against positives is reported per mode.

Selection rule (written before the runs, issue 40): the bounded setting is chosen on warm-validation NDCG@20 at
the largest size where the unbounded training still runs to its early stop here (300k positives if it fits, else
100k), over seeds 0, 1, 2: among id_steps_per_epoch in {48, 96} x id_lr_batch_power in {0, 0.5}, the cheapest
(fewest steps, then power 0) whose mean is within 2% of the unbounded mean, paired per seed. 48 keeps MovieLens-posters
exactly as it trains today (about 31k training positives: 31 steps of 1,024, under the cap). If none is within 2%, none becomes the default.

    python bench/train_scale.py --sizes 100000,300000,1000000 --timing-only 1000000 --modes unbounded,bounded:48:0
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from coldproxy.config import TrainSettings  # noqa: E402
from models.data import Dataset, cold_start_split  # noqa: E402
from models.idmodel import train_id_model  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def latent_log(positives: int, seed: int = 0, n_items: int = 3000, per_user: int = 50, factors: int = 16) -> Dataset:
    """A log of about ``positives`` distinct (user, item) pairs from a latent model (see the module docstring)."""
    rng = np.random.default_rng(seed)
    V = rng.standard_normal((n_items, factors)) / np.sqrt(factors)
    bias = rng.normal(0.0, 1.0, n_items)
    n_users = max(1, positives // per_user)
    users, items = [], []
    for start in range(0, n_users, 2000):
        U = rng.standard_normal((min(2000, n_users - start), factors))
        scores = 3.0 * U @ V.T + bias + rng.gumbel(size=(len(U), n_items))
        top = np.argpartition(-scores, per_user, axis=1)[:, :per_user]
        users.append(np.repeat(np.arange(start, start + len(U)), per_user))
        items.append(top.ravel())
    return Dataset(name=f"latent-{positives}", item_ids=[str(i) for i in range(n_items)],
                   item_texts=[f"item {i}" for i in range(n_items)], item_images=[None] * n_items,
                   user_ids=[str(u) for u in range(n_users)], users=np.concatenate(users).astype(np.int64),
                   items=np.concatenate(items).astype(np.int64))


def parse_mode(text: str) -> tuple[str, dict]:
    """``unbounded`` or ``bounded:STEPS:POWER`` -> (label, settings update)."""
    if text == "unbounded":
        return text, {"id_steps_per_epoch": 0, "id_lr_batch_power": 0.0}
    _, steps, power = text.split(":")
    return text, {"id_steps_per_epoch": int(steps), "id_lr_batch_power": float(power)}


def run(ds: Dataset, seed: int, update: dict, epochs: int | None) -> dict:
    split = cold_start_split(ds, seed)
    settings = TrainSettings().model_copy(update=update | {"seed": seed, **({"id_epochs": epochs} if epochs else {})})
    t = time.perf_counter()
    _, _, log = train_id_model(ds.n_users, ds.n_items, split, settings, progress=False)
    total = time.perf_counter() - t
    best = max(log["history"], key=lambda h: h["warm_val_ndcg@20"]) if log["history"] else {"epoch": None}
    return {"train_positives": len(split.train), "batch": log["batch"], "lr": log["lr"], "epochs_run": log["epochs_run"],
            "best_epoch": best["epoch"], "seconds_per_epoch": round(log["train_s"] / log["epochs_run"], 3),
            "total_s": round(total, 1), "warm_val_ndcg@20": round(float(log["best_warm_val_ndcg@20"]), 5),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def exponent(rows: list[dict]) -> float | None:
    pts = sorted({(r["train_positives"], r["seconds_per_epoch"]) for r in rows})
    if len(pts) < 2:
        return None
    x, y = np.log([p[0] for p in pts]), np.log([p[1] for p in pts])
    return round(float(np.polyfit(x, y, 1)[0]), 2)


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="100000,300000,1000000")
    ap.add_argument("--modes", default="unbounded,bounded:48:0")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--timing-only", default="", help="sizes run for --timing-epochs epochs only")
    ap.add_argument("--timing-epochs", type=int, default=2)
    ap.add_argument("--name", default="train_scale")
    args = ap.parse_args()
    timing_only = {int(x) for x in args.timing_only.split(",") if x}
    rows = []
    for size in [int(x) for x in args.sizes.split(",")]:
        ds = latent_log(size)
        for mode, update in map(parse_mode, args.modes.split(",")):
            for seed in [int(x) for x in args.seeds.split(",")]:
                row = {"positives": size, "mode": mode, "seed": seed, "timing_only": size in timing_only}
                row |= run(ds, seed, update, args.timing_epochs if size in timing_only else None)
                rows.append(row)
                print(json.dumps(row), flush=True)
    RESULTS.mkdir(exist_ok=True)
    exponents = {m: exponent([r for r in rows if r["mode"] == m]) for m in dict.fromkeys(r["mode"] for r in rows)}
    out = {"command": "python bench/train_scale.py " + " ".join(sys.argv[1:]), "cores": os.cpu_count(),
           "exponents_seconds_per_epoch": exponents, "rows": rows}
    (RESULTS / f"{args.name}.json").write_text(json.dumps(out, indent=2))
    plot(rows, RESULTS / f"{args.name}.png")
    md = [f"# ID-model training cost against the log's size ({os.cpu_count()} cores)", "", f"Command: `{out['command']}`", "",
          "Fitted exponent of seconds per epoch against training positives: "
          + ", ".join(f"{m} {e}" for m, e in exponents.items()) + ".", "",
          "| positives | mode | seed | batch | s / epoch | epochs run (best) | total (s) | warm-val NDCG@20 | peak RSS (MB) |",
          "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        conv = "timing only" if r["timing_only"] else f"{r['epochs_run']} ({r['best_epoch']})"
        ndcg = "" if r["timing_only"] else r["warm_val_ndcg@20"]
        md.append(f"| {r['train_positives']:,} | {r['mode']} | {r['seed']} | {r['batch']} | {r['seconds_per_epoch']} | "
                  f"{conv} | {r['total_s']} | {ndcg} | {r['peak_rss_mb']} |")
    (RESULTS / f"{args.name}.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
