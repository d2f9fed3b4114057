"""Cold-start quality benchmark on MovieLens-posters: baselines vs the skeleton proxy, 3 seeds.

For each seed: split items 8:1:1, train the ID model (MF-BPR) on warm interactions, then every
method produces embeddings for the cold items (warm items keep their ID embeddings) and is scored
in the cold, warm and all-items scenarios. Writes bench/results/quality_movielens.{json,md,png}.

    python bench/quality.py [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from coldproxy.config import TrainSettings
from models.baselines import cb2cf_embeddings, knn_embeddings, random_embeddings
from models.evaluate import evaluate_split
from models.train import train

RESULTS = Path(__file__).resolve().parent / "results"
METHODS = ("random", "content-kNN", "CB2CF", "proxy (MLP, BPR+MSE)")
METRICS = ("recall@10", "ndcg@10", "recall@20", "ndcg@20")
SCENARIOS = ("cold", "warm", "all")


def run_seed(seed: int) -> dict[str, dict]:
    s = TrainSettings(seed=seed)
    r = train(s)
    sp, U, I = r.split, r.user_emb, r.item_emb
    cold = np.concatenate([sp.val_items, sp.test_items])
    cb2cf, _ = cb2cf_embeddings(r.features, sp, U, I, cold, s)
    embs = {
        "random": random_embeddings(I, cold, seed),
        "content-kNN": knn_embeddings(r.features, I, sp.warm_items, cold, n=5),
        "CB2CF": cb2cf,
        "proxy (MLP, BPR+MSE)": r.served_item_emb(),
    }
    return {m: evaluate_split(U, e, sp) for m, e in embs.items()}


def summarise(per_seed: list[dict]) -> dict:
    out = {}
    for m in METHODS:
        out[m] = {}
        for sc in SCENARIOS:
            out[m][sc] = {}
            for k in METRICS:
                v = np.array([run[m][sc][k] for run in per_seed])
                out[m][sc][k] = {"mean": float(v.mean()), "std": float(v.std(ddof=0)), "values": v.tolist()}
    return out


def markdown(summary: dict, seeds: list[int]) -> str:
    lines = []
    for sc in SCENARIOS:
        lines += [f"\n**{sc}** scenario — mean ± std over seeds {seeds}\n",
                  "| method | " + " | ".join(METRICS) + " |", "|---|" + "---|" * len(METRICS)]
        for m in METHODS:
            cells = [f"{summary[m][sc][k]['mean']:.4f} ± {summary[m][sc][k]['std']:.4f}" for k in METRICS]
            lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    means = [summary[m]["cold"]["recall@20"]["mean"] for m in METHODS]
    stds = [summary[m]["cold"]["recall@20"]["std"] for m in METHODS]
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.bar(range(len(METHODS)), means, yerr=stds, capsize=4, color=["#bbb", "#8ab", "#79c", "#e73"])
    ax.set_xticks(range(len(METHODS)), METHODS, rotation=15, ha="right")
    ax.set_ylabel("cold Recall@20")
    ax.set_title("MovieLens-posters item cold-start (mean ± std, 3 seeds)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    a = p.parse_args()
    t = time.time()
    per_seed = [run_seed(seed) for seed in a.seeds]
    summary = summarise(per_seed)
    RESULTS.mkdir(parents=True, exist_ok=True)
    table = markdown(summary, a.seeds)
    (RESULTS / "quality_movielens.json").write_text(json.dumps(
        {"dataset": "movielens-posters", "seeds": a.seeds, "seconds": time.time() - t, "summary": summary}, indent=2))
    (RESULTS / "quality_movielens.md").write_text("# Cold-start quality, MovieLens-posters\n" + table)
    plot(summary, RESULTS / "quality_movielens.png")
    print(table)
    print(f"wrote {RESULTS}/quality_movielens.{{json,md,png}} in {time.time() - t:.0f}s")


if __name__ == "__main__":
    main()
