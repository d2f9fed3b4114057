"""The results page's Youshu section (``bench/report.py``): the bundle model's rows beside MoDiffE's published numbers
and the content-free list, each row saying what it adds."""

from __future__ import annotations

import json

import numpy as np
from seed_stats import mean_sd_text as stats

from models.decision import clears

MODIFFE = {"cold": (0.1210, 0.0890), "warm": (0.2846, 0.1697), "all": (0.1838, 0.1090)}  # MoDiffE, Table 3 (Youshu)
COHEAT = {"cold": (0.0183, 0.0105), "warm": (0.2804, 0.1646), "all": (0.1247, 0.0833)}  # in MoDiffE's Table 3
BUNDLE_ROWS = (  # bench/bundles.py row -> what it is
    ("w/o cold calibration", "the representation alone: like for like with MoDiffE"),
    ("size prior alone", "warm bundles by the model, new ones by log(members) alone: no content"),
    (
        "calibration w/o per-user placement",
        "+ the cold calibration fitted on tune (view scales, source, size prior, offset)",
    ),
    ("served (variant chosen on tune)", "+ the per-user placement t_u (served): a serving policy; t_u fitted {pool}"),
    (
        "placement fitted against every new bundle",
        "the full model, t_u fitted against every new bundle, the test "
        "split's included (transductive, over their vectors)",
    ),
    (
        "placement fitted on tune's new bundles only",
        "the full model, t_u fitted on tune's new bundles only (inductive: never against the test split's)",
    ),
)
POOLS = {"all_new": "against every new bundle (transductive)", "tune_new": "on tune's new bundles only (inductive)"}


def bundle_section(run: dict | None, free: dict | None) -> list[str]:
    """The results page's bundle section from ``bundles.json`` (``run``) and ``bundles_content_free.json``."""
    out = ["## Bundles: Youshu (MoDiffE's setting)", ""]
    if run is None:
        return out + ["Not measured yet (`bench/results/bundles.json` is missing).", ""]
    out += [
        "Recall@20 / NDCG@20, mean ± sample std over seeds " + ", ".join(map(str, run["seeds"])) + "; source "
        "`bench/results/bundles.json` (`python bench/bundles.py`). **Only the representation row is a "
        "like-for-like "
        "comparison with MoDiffE's published numbers.** The rows below it add a serving policy fitted on the tune "
        "split: a size prior α·log(members)+β and a per-user placement t_u that reserves k of the top 20 for "
        "bundles without interactions. t_u is fitted either against every bundle without training interactions, "
        "the "
        "test ones included (transductive: over their vectors, never their labels), or only against the tune "
        "split's new bundles (inductive: what a served system has before new bundles arrive); each row says "
        "which.",
        "",
        "| row | what it is | cold | warm | all |",
        "|---|---|---|---|---|",
    ]
    for row, what in BUNDLE_ROWS:
        if not any(row in by_seed for seeds in run["runs"].values() for by_seed in seeds.values()):
            continue  # the row of the pool the served rows already have
        pools = {
            by_seed["choices"].get("placement_pool", "all_new")  # runs before the option: every new bundle
            for sc, seeds in run["runs"].items()
            if sc != "warm"  # warm has no new bundles to place
            for by_seed in seeds.values()
        }
        what = what.format(pool=" / ".join(POOLS[p] for p in sorted(pools)))
        cells = []
        for scenario in ("cold", "warm", "all"):
            seeds = run["runs"].get(scenario, {})
            r = [seeds[s][row]["recall@20"] for s in sorted(seeds) if row in seeds[s]]
            n = [seeds[s][row]["ndcg@20"] for s in sorted(seeds) if row in seeds[s]]
            cells.append(f"{stats(r)} / {stats(n)}" if r else "–")
        out.append(f"| {row} | {what} | " + " | ".join(cells) + " |")
    for pool, fit in (("all_new", "t_u against every new bundle"), ("tune_new", "t_u on tune's new bundles only")):
        if free is not None:
            runs = free["runs"]
            out.append(
                f"| content-free list ({fit}) | no model, no content: warm bundles by popularity, new ones by "
                "size, k of the top 20 (k on tune; `python bench/bundle_content_free.py`, "
                "`bench/results/bundles_content_free.json`) | "
                + " | ".join(
                    f"{runs[s]['by_pool'][pool]['recall@20']:.4f} / {runs[s]['by_pool'][pool]['ndcg@20']:.4f} "
                    f"(k = {runs[s]['by_pool'][pool]['k']})"
                    if s in runs
                    else "–"
                    for s in ("cold", "warm", "all")
                )
                + " |"
            )
    out.append(
        "| MoDiffE (published, Table 3) | their model, their split | "
        + " | ".join(f"{r:.4f} / {n:.4f}" for r, n in MODIFFE.values())
        + " |"
    )
    return out + [""]


def exposure_section(served: dict | None, cold: dict | None) -> list[str]:
    """What the served bundle package shows: content-free bundles against real new ones (``bundle_exposure.json``),
    beside the cold package it replaced (``bundle_exposure_cold.json``)."""
    out = ["### What a product shows: new bundles by their content", ""]
    if served is None:
        return out + ["Not measured yet (`python bench/bundle_exposure.py`).", ""]
    out += [
        "Every tune user's top 20, their training bundles left out, after the real held-out new bundles and "
        "content-free ones (random items at 3 members, the real ones' median and 90th percentile size, and "
        "popular items at the median) are posted; *alone*: only the content-free ones, as on a fresh "
        "deployment. Exposure ratio: a group's share of the slots over its share of the catalogue (the worst "
        "content-free group); #1: users, per 60, whose first bundle is content-free. Source "
        "`bench/results/bundle_exposure.{json,md}` (`python bench/bundle_exposure.py`), the cold package "
        "`bundle_exposure_cold.*`.",
        "",
        "| package (scenario, seed) | test Recall@20 | noise exposure ratio (beside real / alone) | "
        "noise #1 per 60 (beside / alone) | real new bundles' exposure ratio |",
        "|---|---|---|---|---|",
    ]
    for runs in (served["runs"], cold["runs"] if cold else []):
        for r in runs:
            beside, alone = (r["pools"][p]["groups"] for p in r["pools"])
            noise = [g for g in alone if not g.startswith("warm")]
            real = next(g for g in beside if g.startswith("real"))
            out.append(
                f"| {r['package_version']} ({r['scenario']}, {r['training_seed']}) | "
                f"{r['test_metrics']['recall@20']:.4f} | "
                f"{max(beside[g]['exposure_ratio'] for g in noise):.2f} / "
                f"{max(alone[g]['exposure_ratio'] for g in noise):.2f} | "
                f"{sum(beside[g]['first_per_60_users'] for g in noise):.2f} / "
                f"{sum(alone[g]['first_per_60_users'] for g in noise):.2f} | "
                f"{beside[real]['exposure_ratio']:.2f} |"
            )
    return out + [""]


ITEM_VIEW_ROWS = {  # bundle_item_view.json row -> what differs from MoDiffE's protocol
    "overlap": "no model: how many of the bundle's items the user interacted with (MoDiffE's Y), over "
    "members^p, p on tune",
    "als": "ALS on the user-item interactions instead of LightGCN, a bundle the sum of its items' vectors over "
    "members^p (MoDiffE: the mean, p = 1), the cell chosen on tune",
}


def item_view_section(run: dict | None, bundles: dict | None) -> list[str]:
    """Where the cold gap comes from (``bundle_item_view.json``): the item level alone, under the papers' pool and
    with only new bundles as candidates, beside the model's representation row (``bundles.json``)."""
    out = ["### Where the cold gap comes from: the item level alone", ""]
    if run is None:
        return out + ["Not measured yet (`python bench/bundle_item_view.py`).", ""]
    out += [
        "Test Recall@20 / NDCG@20 of item-level scorers that use only what a served system has when a bundle "
        "arrives (its items, and users' interactions with those items), no bundle-level signal, no size prior "
        f"and no quota; ALS rows: mean ± std over ALS seeds {', '.join(map(str, run['seeds']))}. *All bundles*: "
        "the papers' all-unrated pool; *new only*: the warm bundles left out of the candidates (not the papers' "
        "protocol: it shows how much of a cold number is placing new bundles above warm ones). Source "
        "`bench/results/bundle_item_view.{json,md}` (`python bench/bundle_item_view.py`).",
        "",
        "| row | what differs from MoDiffE's protocol | pool | cold | warm | all |",
        "|---|---|---|---|---|---|",
    ]
    scenarios = [s for s in ("cold", "warm", "all") if s in run["runs"]]
    seeds = [str(s) for s in run["seeds"]]
    for key, what in ITEM_VIEW_ROWS.items():
        for pool, name in (("all_bundles", "all bundles"), ("new_only", "new only")):
            cells = []
            for sc in scenarios:
                r = run["runs"][sc]
                if key == "overlap":
                    t = r["overlap"][str(r["chosen"]["overlap_p"])]["test"][pool]
                    cells.append(f"{t['recall@20']:.4f} / {t['ndcg@20']:.4f}")
                else:
                    cell = r["als"][r["chosen"]["als"]]
                    rec = [cell[s]["test"][pool]["recall@20"] for s in seeds]
                    ndcg = [cell[s]["test"][pool]["ndcg@20"] for s in seeds]
                    cells.append(f"{stats(rec)} / {stats(ndcg)}")
            out.append(
                f"| item {'overlap' if key == 'overlap' else 'view (ALS)'} | {what} | {name} | "
                + " | ".join(cells)
                + " |"
            )
    if bundles is not None:
        row = "w/o cold calibration"
        cells = []
        for sc in scenarios:
            by_seed = bundles["runs"].get(sc, {})
            r = [by_seed[s][row]["recall@20"] for s in sorted(by_seed) if row in by_seed[s]]
            n = [by_seed[s][row]["ndcg@20"] for s in sorted(by_seed) if row in by_seed[s]]
            cells.append(f"{stats(r)} / {stats(n)}" if r else "–")
        out.append(
            "| coldproxy's bundle representation | like for like (the first row of the table above) | all "
            "bundles | " + " | ".join(cells) + " |"
        )
    for name, ref in (("MoDiffE", MODIFFE), ("CoHeat (MoDiffE's Table 3)", COHEAT)):
        out.append(
            f"| {name}, published | their model, the same split files | all bundles | "
            + " | ".join(f"{ref[sc][0]:.4f} / {ref[sc][1]:.4f}" for sc in scenarios)
            + " |"
        )
    expo = {sc: run["runs"][sc]["chosen"]["exposure"] for sc in scenarios}
    worst = {sc: max(v["exposure_ratio"] for k, v in e.items() if not k.startswith("real")) for sc, e in expo.items()}
    out += [
        "",
        "The chosen ALS item view's exposure (tune users' top 20, real new bundles and content-free ones "
        "posted beside the warm bundles): worst content-free group's exposure ratio "
        + ", ".join(f"{sc} {w:.2f}" for sc, w in worst.items())
        + "; real new bundles' "
        + ", ".join(f"{sc} {expo[sc]['real new bundles']['exposure_ratio']:.2f}" for sc in scenarios)
        + ".",
    ]
    return out + [""]


def override_key(row: dict) -> str:
    """A ``bundle_item_pooling`` row's settings override, as one comparable string."""
    return json.dumps(row["override"], sort_keys=True)


def item_pooling_section(runs: list[tuple[str, dict]]) -> list[str]:
    """The item level inside the representation (``bundle_item_pooling*.json``, each with its file stem): each
    override's tune and test Recall@20 / NDCG@20 per scenario over its seeds, the gain over the default paired per
    seed on tune."""
    rows = [r for _, run in runs for r in run["rows"]]
    out = ["### The item level inside the representation", ""]
    if not rows:
        return out + ["Not measured yet (`python bench/bundle_item_pooling.py`).", ""]
    out += [
        "The gate's vectors as they are (no calibration: no size prior, no quota), all-unrated pool, after "
        "training with an override of `BundleSettings`: `item_pooling` (the item-level view's bundle: its items' "
        "sum over members^p; 1 is MoDiffE's mean) and `item_bpr_weight` (MoDiffE eq. 2: CF on the user-item "
        "interactions). Chosen on tune only; test reported. Mean ± std over the seeds, and the tune Recall@20 "
        "gain over the default per seed. Sources (`python bench/bundle_item_pooling.py`): "
        + ", ".join(f"`bench/results/{name}.{{json,md}}`" for name, _ in runs)
        + ".",
        "",
        "| scenario | override | seeds | tune Recall@20 / NDCG@20 | test Recall@20 / NDCG@20 | tune gain per seed |",
        "|---|---|---|---|---|---|",
    ]
    for sc in ("cold", "warm", "all"):
        here = [r for r in rows if r["scenario"] == sc]
        base = {r["seed"]: r["tune"]["recall@20"] for r in here if not r["override"]}
        for k in dict.fromkeys(override_key(r) for r in here):
            rs = sorted((r for r in here if override_key(r) == k), key=lambda r: r["seed"])
            cell = lambda part: " / ".join(stats([r[part][m] for r in rs]) for m in ("recall@20", "ndcg@20"))  # noqa: E731
            gain = " / ".join(f"{r['tune']['recall@20'] - base[r['seed']]:+.4f}" for r in rs if r["seed"] in base)
            out.append(
                f"| {sc} | `{k}` | {', '.join(str(r['seed']) for r in rs)} | {cell('tune')} | {cell('test')} | "
                f"{gain if k != '{}' else '–'} |"
            )
    here = {sc: [r for r in rows if r["scenario"] == sc] for sc in ("cold", "warm", "all")}
    chosen = {sc: pooling_choice(rs) for sc, rs in here.items()}
    before = {sc: pooling_choice(rs, floored=False) for sc, rs in here.items()}
    out += [
        "",
        "Chosen on tune by the decision rule with a floor ([How the defaults were chosen](ablations.md); each "
        "override in the order run, the first the default, replaces the one chosen so far only if its paired gain "
        "clears the floor, the item BPR being the costlier setting): "
        + "; ".join(f"{sc} `{c}`" for sc, c in chosen.items() if c is not None)
        + ". The rule committed before the runs (ahead on the mean and on 2 of 3 seeds) chose "
        + "; ".join(f"{sc} `{c}`" for sc, c in before.items() if c is not None)
        + ". Cold and warm train with the floor's choice by default (`ITEM_LEVEL_DEFAULTS` in "
        "`coldproxy/config/bundles.py`); the served scenario, all, is decided on the served package below.",
    ]
    return out + [""]


def pooling_choice(rows: list[dict], floored: bool = True) -> str | None:
    """The override chosen among ``rows`` (one scenario) by tune Recall@20, each in the order run replacing the one
    chosen so far: by the floor (``models.decision.clears``, an item BPR weight the costlier side), or with
    ``floored`` false by the rule committed before the runs (ahead on the mean and on 2 of 3 seeds). None without a
    default run."""
    tune = {}
    for r in rows:
        tune.setdefault(override_key(r), {})[r["seed"]] = r["tune"]["recall@20"]
    if "{}" not in tune:
        return None
    chosen = "{}"
    for k, by_seed in tune.items():
        seeds = sorted(set(by_seed) & set(tune[chosen]))
        if k == chosen or len(seeds) < 3:
            continue
        lo, hi = np.array([tune[chosen][s] for s in seeds]), np.array([by_seed[s] for s in seeds])
        if floored:
            bpr = lambda key: json.loads(key).get("item_bpr_weight", 0.0)  # noqa: E731
            cheap, dear = (lo, hi) if bpr(k) >= bpr(chosen) else (hi, lo)
            better = clears(cheap, dear)["adopt"] == (bpr(k) >= bpr(chosen))
        else:
            better = hi.sum() > lo.sum() and int((hi > lo).sum()) >= 2
        if better:
            chosen = k
    return chosen


def served_decision_section(decision: dict | None, name: str, title: str, why_not: str = "") -> list[str]:
    """Whether the served package takes a setting (``<name>.json`` of ``bench/decide_bundle_served.py``): its served
    tune and test numbers per seed beside the default's, the rule's answer and the exposure check on its packages."""
    out = [f"### {title}", ""]
    if decision is None:
        return out + ["Not decided yet (`python bench/decide_bundle_served.py`).", ""]
    label = decision.get("label", "item_pooling 0.5")
    side = "the default over the candidate" if decision.get("default_costlier") else "the candidate over the default"
    out += [
        f"The all scenario's package trained with `{label}` (`coldproxy train-bundles`, 3 seeds), its served tune "
        "NDCG@20 against the default package's, paired per seed, by the decision rule with a floor "
        f"({side}); test reported only. Sources `bench/results/{name}.{{json,md}}` "
        "(`python bench/decide_bundle_served.py`) and the exposure of its packages.",
        "",
        f"| seed | default: tune NDCG@20 / test R@20 / N@20 | {label}: tune NDCG@20 / test R@20 / N@20 |",
        "|---|---|---|",
    ]
    for s in decision["seeds"]:
        b, c = decision["default"][str(s)], decision["candidate"][str(s)]
        out.append(
            f"| {s} | {b['tune_ndcg@20']:.4f} / {b['test']['recall@20']:.4f} / {b['test']['ndcg@20']:.4f} | "
            f"{c['tune_ndcg@20']:.4f} / {c['test']['recall@20']:.4f} / {c['test']['ndcg@20']:.4f} |"
        )
    kept = {True: "kept", False: "broken", None: "not measured"}[decision["exposure"]["kept"]]
    verdict = f"Served: the all scenario takes `{label}`." if decision["serve"] else f"Not served. {why_not}"
    return out + ["", f"Tune: {decision['tune']['why']}; exposure bound {kept}. {verdict}".rstrip(), ""]
