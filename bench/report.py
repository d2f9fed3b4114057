"""The one current results page: ``docs/results.md`` (and ``docs/results.png``), regenerated from the JSON of the runs
that describe today's defaults. Every number on the page is read from those files; a test checks the committed page
is what this writes, so an edit by hand or a rerun that was not reported fails CI.

    python bench/report.py            # rewrite docs/results.md and docs/results.png
    python bench/report.py --check    # exit 1 when docs/results.md is not what the JSON gives

Means are over seeds with the sample standard deviation (ddof=1), per-seed values beside them; a gain over a
baseline is paired: taken per seed, against the best baseline of that seed.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from seed_stats import mean_sd

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
PAGE, PLOT = ROOT / "docs" / "results.md", ROOT / "docs" / "results.png"
DEFAULT = "default: validation-chosen + calibration"  # what a package serves (bench/quality.py CALIBRATED)
GENERATOR = "proxy generator"
BASELINES = ("popularity", "random", "content-kNN", "CB2CF", "DropoutNet", "CLCRec")
ITEM_RUNS = (  # file, title, what differs from the others
    ("quality_movielens", "MovieLens-posters, coldproxy's own ID model (LightGCN)",
     "`python bench/quality.py --only random popularity content-kNN CB2CF DropoutNet CLCRec`"),
    ("quality_movielens_als", "MovieLens-posters, in an ALS space coldproxy did not make",
     "implicit's ALS fitted on each seed's warm training interactions (`bench/external_space.py`); see "
     "[Your recommender's space](your-space.md)"),
    ("quality_sparse_catalogue", "Generated sparse catalogue, coldproxy's own ID model",
     "`python -m models.synthetic_catalogue DIR`, then `python bench/quality.py --data DIR --format generic --only "
     "random popularity content-kNN CB2CF DropoutNet CLCRec --out quality_sparse_catalogue`"),
    ("quality_sparse_catalogue_als", "Generated sparse catalogue, in an ALS space",
     "`python -m models.synthetic_catalogue`, the same ALS protocol"),
)
MODIFFE = {"cold": (0.1210, 0.0890), "warm": (0.2846, 0.1697), "all": (0.1838, 0.1090)}  # MoDiffE, Table 3 (Youshu)
BUNDLE_ROWS = (  # bench/bundles.py row -> what it is
    ("w/o cold calibration", "the representation alone: like for like with MoDiffE"),
    ("size prior alone", "warm bundles by the model, new ones by log(members) alone: no content"),
    ("calibration w/o per-user placement", "+ the cold calibration fitted on tune (view scales, source, size prior, "
     "offset)"),
    ("served (variant chosen on tune)", "+ the per-user placement t_u (served): a serving policy; t_u fitted {pool}"),
    ("placement fitted against every new bundle", "the full model, t_u fitted against every new bundle, the test "
     "split's included (transductive, over their vectors)"),
    ("placement fitted on tune's new bundles only", "the full model, t_u fitted on tune's new bundles only "
     "(inductive: never against the test split's)"),
)
POOLS = {"all_new": "against every new bundle (transductive)", "tune_new": "on tune's new bundles only (inductive)"}


def stats(values: list[float]) -> str:
    mean, sd = mean_sd(values)
    return f"{mean:.4f} ± {sd:.4f}"


def seeds_of(values: list[float]) -> str:
    return " / ".join(f"{x:.4f}" for x in values)


def load(name: str) -> dict | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def metric(run: dict, method: str, scenario: str, name: str) -> list[float] | None:
    vals = [seed.get(method, {}).get(scenario, {}).get(name) for seed in run["per_seed"]]
    return None if any(v is None for v in vals) else vals


def item_section(name: str, title: str, how: str) -> list[str]:
    run = load(name)
    if run is None:
        return [f"## {title}", "", f"Not measured yet (`bench/results/{name}.json` is missing).", ""]
    seeds = run["seeds"]
    out = [f"## {title}", "", f"Seeds {', '.join(map(str, seeds))}; test split, reported only; {how}. Source: "
           f"`bench/results/{name}.json`.", "",
           "| method | cold Recall@20 | cold NDCG@20 | all-items Recall@20 | all-items NDCG@20 | cold Recall@20 per "
           "seed |",
           "|---|---|---|---|---|---|"]
    methods = [m for m in (DEFAULT, GENERATOR, *BASELINES) if metric(run, m, "cold", "recall@20") is not None]
    for m in methods:
        cells = [metric(run, m, s, k) for s, k in (("cold", "recall@20"), ("cold", "ndcg@20"), ("all", "recall@20"),
                                                     ("all", "ndcg@20"))]
        label = f"**{m}**" if m == DEFAULT else m
        out.append(f"| {label} | " + " | ".join(stats(c) if c else "–" for c in cells) + f" | {seeds_of(cells[0])} |")
    out += ["", paired(run, [m for m in methods if m in BASELINES]), ""]
    return out


def paired(run: dict, baselines: list[str]) -> str:
    """The default against each seed's best baseline on cold Recall@20, per seed."""
    if not baselines or metric(run, DEFAULT, "cold", "recall@20") is None:
        return "No baseline was run beside the default on these seeds."
    default = metric(run, DEFAULT, "cold", "recall@20")
    best = [max((metric(run, b, "cold", "recall@20")[i], b) for b in baselines) for i in range(len(default))]
    diffs = [d - b for d, (b, _) in zip(default, best)]
    per_seed = ", ".join(f"{d:+.4f} ({name})" for d, (_, name) in zip(diffs, best))
    return (f"Paired against each seed's best baseline on cold Recall@20: {per_seed}; mean {np.mean(diffs):+.4f}, "
            f"ratio {np.mean(default) / np.mean([b for b, _ in best]):.2f}x.")


def bundle_section() -> list[str]:
    run = load("bundles")
    out = ["## Bundles: Youshu (MoDiffE's setting)", ""]
    if run is None:
        return out + ["Not measured yet (`bench/results/bundles.json` is missing).", ""]
    out += ["Recall@20 / NDCG@20, mean ± sample std over seeds " + ", ".join(map(str, run["seeds"])) + "; source "
            "`bench/results/bundles.json` (`python bench/bundles.py`). **Only the representation row is a "
            "like-for-like "
            "comparison with MoDiffE's published numbers.** The rows below it add a serving policy fitted on the tune "
            "split: a size prior α·log(members)+β and a per-user placement t_u that reserves k of the top 20 for "
            "bundles without interactions. t_u is fitted either against every bundle without training interactions, "
            "the "
            "test ones included (transductive: over their vectors, never their labels), or only against the tune "
            "split's new bundles (inductive: what a served system has before new bundles arrive); each row says "
            "which.", "",
            "| row | what it is | cold | warm | all |", "|---|---|---|---|---|"]
    for row, what in BUNDLE_ROWS:
        if not any(row in by_seed for seeds in run["runs"].values() for by_seed in seeds.values()):
            continue  # the row of the pool the served rows already have
        pools = {by_seed["choices"].get("placement_pool", "all_new")  # runs before the option: every new bundle
                 for sc, seeds in run["runs"].items() if sc != "warm"  # warm has no new bundles to place
                 for by_seed in seeds.values()}
        what = what.format(pool=" / ".join(POOLS[p] for p in sorted(pools)))
        cells = []
        for scenario in ("cold", "warm", "all"):
            seeds = run["runs"].get(scenario, {})
            r = [seeds[s][row]["recall@20"] for s in sorted(seeds) if row in seeds[s]]
            n = [seeds[s][row]["ndcg@20"] for s in sorted(seeds) if row in seeds[s]]
            cells.append(f"{stats(r)} / {stats(n)}" if r else "–")
        out.append(f"| {row} | {what} | " + " | ".join(cells) + " |")
    free = load("bundles_content_free")
    for pool, fit in (("all_new", "t_u against every new bundle"), ("tune_new", "t_u on tune's new bundles only")):
        if free is not None:
            runs = free["runs"]
            out.append(f"| content-free list ({fit}) | no model, no content: warm bundles by popularity, new ones by "
                       "size, k of the top 20 (k on tune; `python bench/bundle_content_free.py`) | " + " | ".join(
                           f"{runs[s]['by_pool'][pool]['recall@20']:.4f} / {runs[s]['by_pool'][pool]['ndcg@20']:.4f} "
                           f"(k = {runs[s]['by_pool'][pool]['k']})" if s in runs else "–"
                           for s in ("cold", "warm", "all"))
                       + " |")
    out.append("| MoDiffE (published, Table 3) | their model, their split | "
               + " | ".join(f"{r:.4f} / {n:.4f}" for r, n in MODIFFE.values()) + " |")
    return out + [""]


SERVING_RUNS = (("serving", "`python bench/serving.py`"), ("serving-recheck", "the same, a second run"),
                ("serving-soak200", "`--soak-rate 200 --name serving-soak200`"))


def serving_rows(s: dict) -> dict[str, str]:
    """One serving run's cells, by row."""
    reads = {r["scenario"]: r for r in s["read_at_rate"]}
    ratios = s["ratios"]
    rows = {f"`POST /v1/items` at concurrency {' / '.join(str(r['concurrency']) for r in s['ingest_service'])}":
            " / ".join(f"{r['throughput_rps']:.1f}" for r in s["ingest_service"]) + " items/s",
            "ingestion against torch eager one item at a time, at concurrency 32 (against its best, c=1)":
            f"{ratios['service_c32_over_torch_c32']:.1f}x ({ratios['service_c32_over_torch_c1']:.1f}x)",
            "ingestion FLOP/s against the measured matmul bound": f"{s['ingest_fraction_of_matmul_bound']:.1%}"}
    for name, what in (("get", "GET embedding"), ("rank", "rank of 1,000 candidates")):
        if name in reads:
            r = reads[name]
            rows[f"{what} at {r['rate']:.0f} req/s, {r['duration']:.0f} s"] = (
                f"p50 {r['latency_ms']['p50']:.1f} ms, p99 {r['latency_ms']['p99']:.1f} ms, {r['errors']} errors")
    soak = s.get("soak")
    if soak:
        rss = [mb for _, mb in soak["rss_mb"]]
        rows[f"{soak['duration'] / 60:.0f}-minute mix (5% ingestions)"] = (
            f"{soak['rate']:.0f} req/s: {soak['requests']:,} requests, {soak['errors']} errors, p99 "
            f"{soak['latency_ms']['p99']:.1f} ms; RSS {rss[0]:.0f} → {rss[-1]:.0f} MB")
    return rows


def serving_section() -> list[str]:
    runs = [(name, load(name), how) for name, how in SERVING_RUNS]
    runs = [(name, r, how) for name, r, how in runs if r is not None]
    out = ["## Serving", ""]
    if not runs:
        return out + ["Not measured yet.", ""]
    cells = [serving_rows(r) for _, r, _ in runs]
    out += [f"`python bench/serving.py` on {runs[0][1]['machine']['cpus']} cores, the load generator on the same "
            f"cores, {len(runs)} runs; sources " + ", ".join(f"`bench/results/{n}.json`" for n, _, _ in runs) + ".",
            "", "| what | " + " | ".join(how for _, _, how in runs) + " |", "|---|" + "---|" * len(runs)]
    for row in dict.fromkeys(k for c in cells for k in c):
        out.append(f"| {row} | " + " | ".join(c.get(row, "–") for c in cells) + " |")
    return out + [""]


def scale_section() -> list[str]:
    s = load("scale")
    if s is None:
        return []
    out = ["## Catalogue size", "", f"`python bench/scale.py`: new items served, recommendations and rankings at "
           f"{s['rate_rps']:.0f} req/s on {s['cores']} cores; source `bench/results/scale.json`.", "",
           "| new items | index | replica start | recommend p99 | rank p99 | recall@100 |", "|---|---|---|---|---|---|"]
    for r in s["rows"]:
        recall = f"{r['recall_at_100']:.3f}" if r.get("recall_at_100") is not None else "exact"
        out.append(f"| {r['items']:,} | {r['index']} | {r['start_s']:.1f} s | {r['recommend_p99_ms']:.1f} ms | "
                   f"{r['rank_p99_ms']:.1f} ms | {recall} |")
    return out + [""]


def training_section() -> list[str]:
    s = load("train_scale")
    if s is None:
        return []
    out = ["## Training cost", "", f"`{s['command']}` on {s['cores']} cores: the whole pipeline on a generated "
           "catalogue (the same ~3,200 articles at every size, 50 purchases a user); source "
           "`bench/results/train_scale.json`.", "",
           "| positives | training clicks | features | ID model | generators | diffusion + gate | calibration + "
           "evaluation | export | total | val-cold NDCG@20 (served) | estimate |",
           "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(s["rows"], key=lambda r: r["positives"]):
        t = r["seconds"]
        out.append(f"| {r['positives']:,} | {r['train_positives']:,} | " + " | ".join(f"{t[k]:.0f} s" for k in (
            "features", "id_model", "proxy", "diffusion+gate")) + f" | {t['calibration'] + t['evaluation']:.0f} s | "
            f"{t['export']:.0f} s | {t['total']:.0f} s ({t['total'] / 60:.1f} min) | {r['val_cold_ndcg@20']:.4f} "
            f"({r['served']}) | {r['estimate_s']:.0f} s |")
    exp = s["exponents"].get("default", {})
    if exp.get("total") is not None:
        out += ["", "Log-log slope of seconds against training clicks, per stage: " + ", ".join(
            f"{k} {v}" for k, v in exp.items() if v is not None) + "."]
    out += ["", "The step budgets that keep an epoch's cost from growing with the log were chosen on validation at "
            "300k purchases: the ID model's in `bench/results/train_scale_300k.md`, the generators' in "
            "`bench/results/train_scale_generator.md`; the ID model's seconds per epoch with and without its budget "
            "are in `bench/results/train_scale_timing.md`."]
    return out + [""]


def offline_table(rows: list[dict]) -> list[str]:
    """The engines' table, here and in ``bench/offline.py``'s own page; runs that timed their first batch add it."""
    timed = any(r.get("first_batch_s") is not None for r in rows)
    cols = ["engine", "items/s", "seconds", "failed rows", "cluster start (s; not in items/s)"] + (
        ["first batch out (s; start-up included)", "rows/s after it"] if timed else [])
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        cells = [r["engine"], r["items_per_s"], r["seconds"], r.get("failed", 0), r.get("cluster_start_s", "")]
        if timed:
            cells += [r.get("first_batch_s", ""), r.get("after_first_rows_per_s", "")]
        out.append("| " + " | ".join("" if c is None else str(c) for c in cells) + " |")
    return out


def offline_section() -> list[str]:
    s = load("offline")
    if s is None:
        return []
    out = ["## Offline backfill", "", f"`{s['command']}` on {s['cores']} cores, {s['items']} items of the generated "
           "catalogue (360x540 JPEG + text each); source `bench/results/offline.json`.", "",
           ] + offline_table(s["rows"])
    cap = next((r["write_items_per_s"] for r in s["rows"] if "write_items_per_s" in r), None)
    out += ["", "Scaling model, items/s for N nodes (each at the 1-node rate above" + (
        f"; into one Redis capped by its measured write rate, {cap} items/s" if cap else "") + "):", "",
            "| nodes | into Parquet | into one Redis |", "|---|---|---|"]
    out += [f"| {n} | {m['parquet']} | {m['redis']} |" for n, m in s["scaling_model"].items()]
    return out + [""]


def render() -> str:
    lines = ["# Results", "",
             "Generated by `python bench/report.py` from the JSON under `bench/results/`; do not edit by hand. Every "
             "setting behind these numbers was chosen on validation; the test split is only reported. "
             "[Models](models.md) explains the method, [How the defaults were chosen](ablations.md) each choice.", ""]
    for name, title, how in ITEM_RUNS:
        lines += item_section(name, title, how)
    lines += bundle_section() + serving_section() + scale_section() + training_section() + offline_section()
    return "\n".join(lines).rstrip("\n") + "\n"


def plot() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run = load("quality_movielens")
    if run is None:
        return
    methods = [m for m in (DEFAULT, GENERATOR, *BASELINES) if metric(run, m, "cold", "recall@20") is not None]
    fig, ax = plt.subplots(figsize=(8, 3.6))
    for i, m in enumerate(methods):
        v = metric(run, m, "cold", "recall@20")
        ax.bar(i, np.mean(v), color="tab:blue" if m == DEFAULT else "tab:gray", alpha=0.7)
        ax.scatter([i] * len(v), v, color="black", s=10, zorder=3)
    ax.set_xticks(range(len(methods)), [m.split(":")[0] for m in methods], rotation=20, ha="right")
    ax.set(ylabel="cold Recall@20 (test)", title="MovieLens-posters: new items, each seed a dot")
    fig.tight_layout()
    fig.savefig(PLOT, dpi=110, metadata={"Software": None})
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--check", action="store_true", help="only compare docs/results.md with what the JSON gives")
    a = p.parse_args(argv)
    page = render()
    if a.check:
        same = PAGE.exists() and PAGE.read_text() == page
        print("docs/results.md is current" if same else "docs/results.md differs: run python bench/report.py")
        return 0 if same else 1
    PAGE.write_text(page)
    plot()
    print(f"wrote {PAGE.relative_to(ROOT)} and {PLOT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
