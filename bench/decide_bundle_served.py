"""Whether the served bundle package (all scenario) takes a setting (issues 56 and 57; the rules in
``docs/ablations.md``, "The decision rule", each committed before its runs): packages trained with it, one a seed,
against the default packages' served tune NDCG@20, paired per seed, by ``models.decision.clears``. The costlier side
must clear the floor: the candidate's (``--label``) when it costs the same or more (a change must win), the default's
with ``--default-costlier`` (the default stays only if it clears over the candidate). A candidate served must keep
``bench/bundle_exposure.py``'s bound on its packages: every content-free group at an exposure ratio of at most 2 and
#1 for at most 1 user in 60, the real held-out new bundles at least at their share. Test numbers are reported only.

    COLDPROXY_BUNDLES_ITEM_POOLING=0.5 coldproxy train-bundles --scenario all --seed S --bundle-package-dir DIR_S
    python bench/bundle_exposure.py --package DIR_0 DIR_1 DIR_2 --name bundle_exposure_pooling
    python bench/decide_bundle_served.py --package DIR_0 DIR_1 DIR_2   # -> bench/results/decide_bundle_pooling.*
    python bench/decide_bundle_served.py --package ... --label "bpr_negatives 1" --default-costlier \
        --name decide_bundle_negatives --exposure bench/results/bundle_exposure_negatives.json

The default's side is ``bench/results/bundles.json`` (the all scenario's served row and the tune NDCG@20 of the
variant it served: the same training path as ``coldproxy train-bundles``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from bundles import SERVED, served_variant
from results_dir import RESULTS

from models.decision import clears

NOISE_RATIO, NOISE_FIRST = 2.0, 1.0  # the exposure bound of issue 56: ratio <= 2, #1 for <= 1 user in 60
REAL = "real new bundles (held out)"


def default_side(bundles: dict) -> dict[int, dict]:
    """Per seed: the served all-scenario package's tune NDCG@20 (its variant's) and test numbers."""
    out = {}
    for seed, run in bundles["runs"]["all"].items():
        tune = run["choices"][served_variant(run)]["tune_ndcg@20"]
        out[int(seed)] = {"tune_ndcg@20": tune, "test": {k: run[SERVED][k] for k in ("recall@20", "ndcg@20")}}
    return out


def candidate_side(packages: list[Path]) -> dict[int, dict]:
    out = {}
    for p in packages:
        m = json.loads((p / "manifest.json").read_text())
        out[m["provenance"]["seed"]] = {
            "package_version": m["version"],
            "item_pooling": m["item_pooling"],
            "tune_ndcg@20": m["metrics"]["calibration"]["tune_ndcg@20"],
            "test": {k: m["metrics"]["test"][k] for k in ("recall@20", "ndcg@20")},
        }
    return out


def exposure_kept(exposure: dict) -> dict:
    """Whether every package's content-free groups stay inside the bound and the real new bundles keep their share,
    in every pool the exposure benchmark posted."""
    breaches = []
    for run in exposure["runs"]:
        for pool, res in run["pools"].items():
            for group, g in res["groups"].items():
                noise = group.startswith(("random items", "popular items"))
                if noise and (g["exposure_ratio"] > NOISE_RATIO or g["first_per_60_users"] > NOISE_FIRST):
                    breaches.append(f"{run['training_seed']}: {pool}: {group}")
                if group == REAL and g["exposure_ratio"] < 1.0:
                    breaches.append(f"{run['training_seed']}: {pool}: real new bundles below their share")
    return {"kept": not breaches, "breaches": breaches}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--package", type=Path, nargs="+", required=True, help="the candidate's packages, one a seed")
    p.add_argument("--exposure", type=Path, default=RESULTS / "bundle_exposure_pooling.json")
    p.add_argument("--label", default="item_pooling 0.5", help="the candidate setting, as the table names it")
    p.add_argument("--default-costlier", action="store_true", help="the default costs more than the candidate")
    p.add_argument("--name", default="decide_bundle_pooling", help="results file stem")
    a = p.parse_args()
    base = default_side(json.loads((RESULTS / "bundles.json").read_text()))
    cand = candidate_side(a.package)
    seeds = sorted(set(base) & set(cand))
    b, c = [base[s]["tune_ndcg@20"] for s in seeds], [cand[s]["tune_ndcg@20"] for s in seeds]
    verdict = clears(c, b) if a.default_costlier else clears(b, c)
    take = not verdict["adopt"] if a.default_costlier else verdict["adopt"]
    expo = exposure_kept(json.loads(a.exposure.read_text())) if a.exposure.exists() else {"kept": None}
    serve = bool(take and expo["kept"])
    out = {
        "label": a.label,
        "default_costlier": a.default_costlier,
        "seeds": seeds,
        "default": base,
        "candidate": cand,
        "tune": verdict,
        "exposure": expo,
        "serve": serve,
    }
    (RESULTS / f"{a.name}.json").write_text(json.dumps(out, indent=2))
    lines = [
        f"The served bundle package (all scenario) with `{a.label}` against the default, "
        "`python bench/decide_bundle_served.py` (the rule: its docstring). Served tune NDCG@20 decides; test is "
        "reported only.",
        "",
        f"| seed | default tune NDCG@20 | {a.label} tune NDCG@20 | default test R@20 / N@20 | {a.label} test R@20 "
        "/ N@20 |",
        "|---|---|---|---|---|",
    ]
    for s in seeds:
        b, c = base[s], cand[s]
        lines.append(
            f"| {s} | {b['tune_ndcg@20']:.4f} | {c['tune_ndcg@20']:.4f} | {b['test']['recall@20']:.4f} / "
            f"{b['test']['ndcg@20']:.4f} | {c['test']['recall@20']:.4f} / {c['test']['ndcg@20']:.4f} |"
        )
    kept = {True: "kept", False: "broken: " + "; ".join(expo.get("breaches", [])), None: "not measured"}
    lines += [
        "",
        f"Tune ({'the default over the candidate' if a.default_costlier else 'the candidate over the default'}): "
        f"{verdict['why']}. Exposure bound: {kept[expo['kept']]}. "
        f"**{'Served' if serve else 'Not served'}**: the all scenario {'takes' if serve else 'keeps'} "
        f"{a.label if serve else 'the default'}.",
    ]
    (RESULTS / f"{a.name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
