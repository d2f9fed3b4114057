"""Bundle benchmark: MoDiffE-style model on Youshu, cold / warm / all scenarios, several seeds.

Per scenario and seed, stages 1-2 (prior, composition features, diffusion experts) are trained once
and the variants share them: the backbone (w/o diffusion: the prior's two views), the full model as
served (gate + cold calibration chosen on tune), w/o cold calibration (the gate's vectors as they
are), the calibration w/o its size prior, w/o the anchor as bundle-view source, w/o its offset or w/o
the per-user placement, cold bundles
ranked by the size prior alone (log members; warm bundles as served), w/o augmentation
(η = 0) and w/o the output-layer gate (both views weight 1), each of the last two calibrated like the
full model. Recall@20 / NDCG@20 on the scenario's test split, all-unrated-bundle protocol, beside
MoDiffE's Table 3.

    python bench/bundles.py [--seeds 0 1 2] [--scenarios cold warm all]

Writes bench/results/bundles.{json,md,png}.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from results_dir import RESULTS
from seed_stats import mean_sd

from coldproxy.bundle_package import ColdCalibration, with_columns
from coldproxy.config import BundleSettings
from models.bundles.backbone import evaluate, train_prior
from models.bundles.calibration import calibrate_cold, served_users, served_vectors
from models.bundles.data import load_youshu
from models.bundles.model import ViewExperts, cold_aware_features, composition_features, fit_view_experts, train_gates
from models.bundles.train import gate_variant

PUBLISHED = {  # MoDiffE Table 3, Youshu: (Recall@20, NDCG@20)
    "MoDiffE (published)": {"cold": (0.1210, 0.0890), "all": (0.1838, 0.1090), "warm": (0.2846, 0.1697)},
    "CoHeat (published)": {"cold": (0.0183, 0.0105), "all": (0.1247, 0.0833), "warm": (0.2804, 0.1646)},
}
SERVED = "served (variant chosen on tune)"
# the full model with the placement fitted against the other pool than the settings' (the served row has theirs)
POOL_ROWS = {
    "tune_new": "placement fitted on tune's new bundles only",  # inductive: never the test split's vectors
    "all_new": "placement fitted against every new bundle",
}  # transductive: the test split's vectors too
HITS = ("hit_rate@20", "new_item_hit_rate@20", "new_item_share_of_positives")  # new items: bundles without interactions
# variant -> row
GATE_ROWS = {"full": "full", "no_augmentation": "w/o augmentation", "no_output_gate": "w/o output gate"}
VARIANTS = (
    "backbone (w/o diffusion)",
    "size prior alone",
    SERVED,
    "full",
    "w/o cold calibration",
    "calibration w/o size prior",
    "calibration w/o anchor source",
    "calibration w/o offset",
    "calibration w/o per-user placement",
    "w/o augmentation",
    "w/o output gate",
    *POOL_ROWS.values(),
)


def stages(s: BundleSettings, progress: bool) -> tuple:
    """Stages 1-2 on the settings' scenario, shared by every variant: (data, prior, its log, diffusion, experts)."""
    d = load_youshu(s.data_dir, s.scenario)
    prior, log_p = train_prior(d, s, progress)
    comp = composition_features(d, s, progress)
    aB, aI = cold_aware_features(d, d.bundle_counts())
    vd = fit_view_experts(d, prior, comp, s, progress)
    return d, prior, log_p, vd, ViewExperts(prior.bB, vd.dB, prior.bI, vd.dI, aB, aI)


def run(scenario: str, seed: int, base: dict, progress: bool) -> dict:
    s = BundleSettings(scenario=scenario, seed=seed, **base)
    t = time.time()
    d, prior, log_p, vd, ex = stages(s, progress)
    aB, aI = ex.aB, ex.aI
    users = prior.users()

    new = d.bundle_counts() == 0

    def test(bundle_vectors: np.ndarray, placement: np.ndarray | float = 0.0) -> dict:
        U = served_users(users, placement)
        m = evaluate(d, d.test, lambda us: U[us] @ bundle_vectors.T, new=new)
        return {k: float(m[k]) for k in ("recall@20", "ndcg@20") + HITS}

    def calibrated(gated: np.ndarray, s_c: BundleSettings) -> tuple[dict, dict]:
        c, placement, log = calibrate_cold(d, users, gated, vd.anchor, s_c, progress)
        return test(served_vectors(d, gated, vd.anchor, c), placement), {"calibration": c.model_dump()} | log

    out = {
        "backbone (w/o diffusion)": test(with_columns(np.concatenate([prior.bB, prior.bI], 1), 0.0, 0.0)),
        "choices": {},
        "prior": {
            "tune_ndcg@20": log_p["best_tune_ndcg@20"],
            "epochs_run": log_p["epochs_run"],
            "fixed_epochs": log_p["fixed_epochs"],
        },
    }
    eta = s.aug_eta[scenario]
    other = next(pool for pool in POOL_ROWS if pool != s.calibration_placement_pool)
    out["choices"]["placement_pool"] = s.calibration_placement_pool  # the served rows' t_u
    for variant, name in GATE_ROWS.items():
        s_v, e = gate_variant(s, scenario, variant)
        gate, _ = train_gates(d, prior, ex, s_v, e, progress)
        with torch.no_grad():
            gated = gate(*(torch.from_numpy(x) for x in (aB, aI, ex.eB, ex.dB, ex.eI, ex.dI)))[0].numpy()
        out[name], out["choices"][name] = calibrated(gated, s)
        if name == "full":
            out["w/o cold calibration"] = test(served_vectors(d, gated, vd.anchor, ColdCalibration()))
            # a cold bundle scored by log(members) alone: how much of the calibration is the size prior
            out["size prior alone"] = test(
                served_vectors(d, gated, vd.anchor, ColdCalibration(bundle_view=0, item_view=0, log_size=1))
            )
            for abl, update in (
                ("calibration w/o size prior", {"calibration_size_grid": [0.0]}),
                ("calibration w/o anchor source", {"calibration_sources": ["gate"]}),
                ("calibration w/o offset", {"calibration_offset_grid": [0.0]}),
                ("calibration w/o per-user placement", {"calibration_cold_slots_grid": []}),
                (POOL_ROWS[other], {"calibration_placement_pool": other}),
            ):
                out[abl], out["choices"][abl] = calibrated(gated, s.model_copy(update=update))
    out[SERVED] = out[served_variant(out)]
    out["seconds"] = time.time() - t
    out["aug_eta"] = eta
    print(scenario, seed, json.dumps(out), flush=True)
    return out


def served_variant(out: dict) -> str:
    """The row ``train_bundle_model`` serves: the calibrated gate variant best on tune, the first on a tie."""
    return max(GATE_ROWS.values(), key=lambda row: out["choices"][row]["tune_ndcg@20"])


def summarise(runs: dict) -> dict:
    table = {}
    for sc, by_seed in runs.items():
        for v in VARIANTS:
            for m in ("recall@20", "ndcg@20") + HITS:
                if all(m in r.get(v, {}) for r in by_seed.values()):  # runs before a row or the hit rates have none
                    table.setdefault(v, {}).setdefault(sc, {})[m] = mean_sd([r[v][m] for r in by_seed.values()])
    return table


def write(report: dict, name: str = "bundles") -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(report, indent=2))
    if name != "bundles":  # one shard of a parallel run: the table comes from --merge
        return
    scen = list(report["runs"])
    lines = [
        "| model | " + " | ".join(f"{sc} R@20 | {sc} N@20" for sc in scen) + " |",
        "|---|" + "---|---|" * len(scen),
    ]
    for v, by in report["table"].items():
        cells = [
            f"{by[sc]['recall@20'][0]:.4f} ± {by[sc]['recall@20'][1]:.4f} | {by[sc]['ndcg@20'][0]:.4f} ± "
            f"{by[sc]['ndcg@20'][1]:.4f}"
            if sc in by
            else "– | –"
            for sc in scen
        ]  # a row some scenarios' runs predate
        lines.append(f"| {v} | " + " | ".join(cells) + " |")
    for name, by in PUBLISHED.items():
        lines.append(f"| {name} | " + " | ".join(f"{by[sc][0]:.4f} | {by[sc][1]:.4f}" for sc in scen) + " |")
    if "all" in scen and all(HITS[0] in by.get("all", {}) for by in report["table"].values()):
        lines += [
            "",
            "**all** scenario: share of test positives reaching the user's top 20 (all; bundles without "
            "interactions) and those bundles' share of the positives",
            "",
            "| model | " + " | ".join(HITS) + " |",
            "|---|" + "---|" * len(HITS),
        ]
        lines += [
            f"| {v} | " + " | ".join(f"{by['all'][m][0]:.4f} ± {by['all'][m][1]:.4f}" for m in HITS) + " |"
            for v, by in report["table"].items()
            if "all" in by
        ]
    (RESULTS / "bundles.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(12, 4.5))
    names = list(report["table"]) + list(PUBLISHED)
    w = 0.8 / len(names)
    colours = plt.cm.tab20(np.arange(len(names)) % 20)  # one colour per row: the default cycle repeats after 10
    for k, name in enumerate(names):
        ys = [
            (report["table"][name][sc]["recall@20"][0] if sc in report["table"][name] else np.nan)
            if name in report["table"]
            else PUBLISHED[name][sc][0]
            for sc in scen
        ]
        ax.bar(np.arange(len(scen)) + k * w, ys, w, label=name, color=colours[k])
    ax.set_xticks(np.arange(len(scen)) + 0.4 - w / 2, scen)
    ax.set(ylabel="Recall@20", title="Youshu bundles: ours (mean over seeds) vs MoDiffE Table 3")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    fig.savefig(RESULTS / "bundles.png", dpi=110)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--scenarios", nargs="+", default=["cold", "warm", "all"])
    p.add_argument("--set", nargs="*", default=[], help="settings overrides, name=json-value (e.g. id_epochs=50)")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--name", default="bundles", help="results file stem; other than 'bundles': a shard for --merge")
    p.add_argument("--merge", nargs="*", type=Path, help="shards' JSON files to combine into bundles.{json,md,png}")
    a = p.parse_args()
    base = {k: json.loads(v) for k, v in (x.split("=", 1) for x in a.set)}
    t = time.time()
    if a.merge:
        shards = [json.loads(f.read_text()) for f in a.merge]
        runs: dict = {}
        for sh in shards:
            for sc, by_seed in sh["runs"].items():
                runs.setdefault(sc, {}).update(by_seed)
        seeds = sorted({int(k) for by in runs.values() for k in by})
        base = [{"scenarios": list(sh["runs"]), "settings": sh["settings"]} for sh in shards]  # later shards win
        write(
            {
                "settings": base,
                "seeds": seeds,
                "runs": runs,
                "table": summarise(runs),
                "seconds": sum(r["seconds"] for by in runs.values() for r in by.values()),
            }
        )
        return
    runs = {sc: {str(seed): run(sc, seed, base, not a.quiet) for seed in a.seeds} for sc in a.scenarios}
    write(
        {"settings": base, "seeds": a.seeds, "runs": runs, "table": summarise(runs), "seconds": time.time() - t}, a.name
    )


if __name__ == "__main__":
    main()
