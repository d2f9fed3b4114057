"""Diffusion expert benchmark: samplers, steps and sampling cost, in one run per seed.

For each seed: train the ID model, the generator and the diffusion expert (the configured sampler
drives its early stopping), then score on the MovieLens-posters cold split, for the same denoiser:
the anchor alone (no diffusion), the content proxy alone, DDPM ancestral with 500 and 50 steps,
DPM-Solver++ first order and 2M with S in {1, 2, 3, 5, 10}, and 2M from pure noise. Sampling cost
is denoiser calls per item and wall time per 1,000 items (torch, this machine's CPU). Writes
bench/results/diffusion.{json,md,png}; the plot is cold Recall@20 against denoiser calls.

    python bench/diffusion.py [--seeds 0] [--start 0.5]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from results_dir import RESULTS
from seed_stats import mean_sd

from coldproxy.config import TrainSettings
from export.encoders import encoder_graphs
from models.evaluate import evaluate_split
from models.items.experts import fit_experts
from models.items.proxy_training import predict
from models.items.train import train
from models.samplers import sample

STEPS = (1, 2, 3, 5, 10)


def variants() -> list[tuple[str, dict]]:
    out = [
        ("DDPM-500", {"method": "ddpm", "steps": 500, "spacing": "time"}),
        ("DDPM-50", {"method": "ddpm", "steps": 50, "spacing": "time"}),
    ]
    for m, label in (("dpmpp1", "DPM-Solver++ 1"), ("dpmpp2m", "DPM-Solver++ 2M")):
        out += [(f"{label}, S={s}", {"method": m, "steps": s, "spacing": "logsnr"}) for s in STEPS]
    out.append(
        (
            "DPM-Solver++ 2M, S=3, pure-noise start",
            {"method": "dpmpp2m", "steps": 3, "spacing": "logsnr", "from_noise": True},
        )
    )
    return out


def run_seed(seed: int, start: float) -> dict:
    s = TrainSettings(seed=seed, sampler_start=start)
    r = train(s, encoder_graphs)
    f, sp, U, I = r.features, r.split, r.user_emb, r.item_emb
    n = r.dataset.n_items
    ex = r.experts or fit_experts(f, sp, U, I, predict(r.proxy, f, np.arange(n)), s, gate=False)
    proxy = ex.proxy
    cold = np.setdiff1d(np.arange(n), sp.warm_items)
    res = {}

    def score(name, emb_cold, calls, seconds):
        emb = I.copy()
        emb[cold] = emb_cold
        m = evaluate_split(U, emb, sp)["cold"]
        res[name] = {
            "recall@20": m["recall@20"],
            "ndcg@20": m["ndcg@20"],
            "denoiser_calls": calls,
            "ms_per_1000_items": seconds / len(cold) * 1e6,
        }
        print(
            f"seed {seed} {name}: R@20 {m['recall@20']:.4f} NDCG@20 {m['ndcg@20']:.4f} calls {calls} "
            f"{res[name]['ms_per_1000_items']:.1f} ms/1000",
            flush=True,
        )

    score("anchor alone (no diffusion)", ex.anchor[cold], 0, 0.0)
    score("content proxy alone", proxy[cold], 0, 0.0)
    for name, kw in variants():
        kw = {"t_start": start * s.diffusion_T, "seed": seed} | kw
        t = time.perf_counter()
        out = sample(ex.denoiser, ex.anchor[cold], proxy[cold], **kw)
        score(name, out, kw["steps"], time.perf_counter() - t)
    return {"results": res, "diffusion": {k: v for k, v in ex.logs["diffusion"].items() if k != "history"}}


def summarise(per_seed: list[dict]) -> dict:
    names = per_seed[0]["results"]
    return {
        n: {
            k: dict(zip(("mean", "std"), mean_sd([p["results"][n][k] for p in per_seed])))
            for k in per_seed[0]["results"][n]
        }
        for n in names
    }


def markdown(summary: dict, seeds, start) -> str:
    lines = [
        "# Diffusion expert: samplers on the MovieLens-posters cold split\n",
        f"seeds {seeds}; anchor start at t = {start} T; mean ± sample std over seeds; torch CPU timings\n",
        "| sampler | cold Recall@20 | cold NDCG@20 | denoiser calls / item | ms per 1,000 items |",
        "|---|---|---|---|---|",
    ]
    for n, v in summary.items():
        lines.append(
            f"| {n} | {v['recall@20']['mean']:.4f} ± {v['recall@20']['std']:.4f} | "
            f"{v['ndcg@20']['mean']:.4f} ± {v['ndcg@20']['std']:.4f} | {v['denoiser_calls']['mean']:.0f} | "
            f"{v['ms_per_1000_items']['mean']:.1f} |"
        )
    ref, fast = summary["DDPM-500"]["recall@20"]["mean"], summary["DPM-Solver++ 2M, S=3"]["recall@20"]["mean"]
    lines.append(
        f"\nDPM-Solver++ 2M S=3 vs DDPM-500: {100 * (fast / ref - 1):+.2f}% cold Recall@20 relative, "
        f"{500 / 3:.0f}x fewer denoiser calls.\n"
    )
    return "\n".join(lines)


def plot(summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for label, marker in (("DPM-Solver++ 1", "o-"), ("DPM-Solver++ 2M", "s-")):
        ys = [summary[f"{label}, S={s}"]["recall@20"]["mean"] for s in STEPS]
        ax.plot(STEPS, ys, marker, label=label)
    ax.plot(
        [50, 500],
        [summary["DDPM-50"]["recall@20"]["mean"], summary["DDPM-500"]["recall@20"]["mean"]],
        "^--",
        label="DDPM ancestral",
    )
    for name, style in (("anchor alone (no diffusion)", ":"), ("content proxy alone", "-.")):
        ax.axhline(summary[name]["recall@20"]["mean"], ls=style, color="grey", label=name)
    ax.set_xscale("log")
    ax.set_xlabel("denoiser calls per item")
    ax.set_ylabel("cold Recall@20")
    ax.legend(fontsize=8)
    ax.set_title("Diffusion expert: quality vs sampling steps")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument(
        "--start", type=float, default=TrainSettings().sampler_start, help="anchor noise level, fraction of T"
    )
    a = p.parse_args()
    t = time.time()
    per_seed = [run_seed(seed, a.start) for seed in a.seeds]
    summary = summarise(per_seed)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "diffusion.json").write_text(
        json.dumps(
            {"seeds": a.seeds, "start": a.start, "seconds": time.time() - t, "summary": summary, "per_seed": per_seed},
            indent=2,
            default=float,
        )
    )
    table = markdown(summary, a.seeds, a.start)
    (RESULTS / "diffusion.md").write_text(table)
    plot(summary, RESULTS / "diffusion.png")
    print(table)


if __name__ == "__main__":
    main()
