"""The results page's sections on the service and its operations (``bench/report.py``): serving latency and
throughput, catalogue size, hostile clients, training cost and the offline backfill. Each takes the JSON its benchmark
wrote (already loaded) and returns markdown lines; nothing here reads a file."""

from __future__ import annotations


def serving_rows(s: dict) -> dict[str, str]:
    """One serving run's cells, by row."""
    reads = {r["scenario"]: r for r in s["read_at_rate"]}
    ratios = s["ratios"]
    vs_torch = f"{ratios['service_c32_over_torch_c32']:.1f}x ({ratios['service_c32_over_torch_c1']:.1f}x)"
    rows = {
        f"`POST /v1/items` at concurrency {' / '.join(str(r['concurrency']) for r in s['ingest_service'])}": " / ".join(
            f"{r['throughput_rps']:.1f}" for r in s["ingest_service"]
        )
        + " items/s",
        "ingestion against torch eager one item at a time, at concurrency 32 (against its best, c=1)": vs_torch,
        "ingestion FLOP/s against the measured matmul bound": f"{s['ingest_fraction_of_matmul_bound']:.1%}",
    }
    for name, what in (("get", "GET embedding"), ("rank", "rank of 1,000 candidates")):
        if name in reads:
            r = reads[name]
            rows[f"{what} at {r['rate']:.0f} req/s, {r['duration']:.0f} s"] = (
                f"p50 {r['latency_ms']['p50']:.1f} ms, p99 {r['latency_ms']['p99']:.1f} ms, {r['errors']} errors"
            )
    soak = s.get("soak")
    if soak:
        rss = [mb for _, mb in soak["rss_mb"]]
        rows[f"{soak['duration'] / 60:.0f}-minute mix (5% ingestions)"] = (
            f"{soak['rate']:.0f} req/s: {soak['requests']:,} requests, {soak['errors']} errors, p99 "
            f"{soak['latency_ms']['p99']:.1f} ms; RSS {rss[0]:.0f} → {rss[-1]:.0f} MB"
        )
    return rows


def serving_section(runs: list[tuple[str, dict, str]]) -> list[str]:
    """``bench/serving.py``'s runs (name, JSON, how it was run), one column each."""
    out = ["## Serving", ""]
    if not runs:
        return out + ["Not measured yet.", ""]
    cells = [serving_rows(r) for _, r, _ in runs]
    out += [
        f"`python bench/serving.py` on {runs[0][1]['machine']['cpus']} cores, the load generator on the same "
        f"cores, {len(runs)} runs; sources " + ", ".join(f"`bench/results/{n}.json`" for n, _, _ in runs) + ".",
        "",
        "| what | " + " | ".join(how for _, _, how in runs) + " |",
        "|---|" + "---|" * len(runs),
    ]
    for row in dict.fromkeys(k for c in cells for k in c):
        out.append(f"| {row} | " + " | ".join(c.get(row, "–") for c in cells) + " |")
    return out + [""]


def scale_section(runs: list[tuple[str, dict, str]]) -> list[str]:
    """``bench/scale.py``'s runs (name, JSON, what it covered)."""
    if not runs:
        return []
    out = [
        "## Catalogue size",
        "",
        "`python bench/scale.py`: N synthetic new items written to Redis, one "
        f"`coldproxy serve` replica started on them, open-loop loads on {runs[0][1]['cores']} cores; sources "
        + ", ".join(f"`bench/results/{n}.json` ({what}, {r['rate_rps']:.0f} req/s)" for n, r, what in runs)
        + ". "
        "Replica start: to ready, serving from the exact index; HNSW graph: until the graph serves. efSearch is "
        "the one the run recorded (– where it did not).",
        "",
        "| new items | index | replica start | HNSW graph | RSS | Redis | recommend k=100 p99 | rank 1,000 p99 | "
        "recall@100 | efSearch | source |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, s, _ in runs:
        ef = s.get("hnsw", {}).get("hnsw_ef_search", "–")
        for r in s["rows"]:
            hnsw = r["index"] == "hnsw"
            recall = f"{r['recall_at_100']:.3f}" if r.get("recall_at_100") is not None else "exact"
            graph = f"{r['ann_ready_s']:.0f} s" if r.get("ann_ready_s") is not None else ("–" if hnsw else "")
            out.append(
                f"| {r['items']:,} | {r['index']} | {r['start_s']:.1f} s | {graph} | {r['rss_mb']:,.0f} MB | "
                f"{r['redis_mb']:,.0f} MB | {r['recommend_p99_ms']:.1f} ms | {r['rank_p99_ms']:.1f} ms | "
                f"{recall} | {ef if hnsw else ''} | {name} |"
            )
    return out + [""]


def hostile_section(a: dict | None, cost: dict | None) -> list[str]:
    """``bench/attack.py`` (one replica as a fresh clone runs it, under attack) and ``bench/defence_overhead.py``
    (what the defences cost users)."""
    if a is None:
        return []
    keys = "a write key held by the attacker" if a.get("with_keys") else "none (the loopback demo)"
    h = a["healthz_during_hostile_reads"]
    out = [
        "## Hostile clients",
        "",
        f"`python bench/attack.py`: {a['requests']:,} hostile requests against one "
        f"replica (API keys: {keys}), **{a['5xx']} answered 5xx**; alive after: {a['server_alive']}, `/readyz` "
        f"{a['readyz_after']}; RSS {a['rss_mb_before']:.0f} MB before, {a['rss_mb_peak']:.0f} MB at its peak, "
        f"{a['rss_mb_after']:.0f} MB after. `/healthz`, timed from another process, p99 {h['p99_ms']} ms while "
        "oversized reads ran 8 at a time; during each attack a client could stall or silence a replica with "
        "(source `bench/results/attack.json`):",
        "",
        "| attack | `/healthz` p99 / max | `/healthz` not 200 | answered |",
        "|---|---|---|---|",
    ]
    for name, v in a.get("per_attack", {}).items():
        seen = v.get("statuses") or v.get("ended_as") or {}
        out.append(
            f"| {name} | {v['healthz']['p99_ms']} / {v['healthz']['max_ms']} ms | {v['healthz']['not_200']} | "
            + ", ".join(f"{k}: {n:,}" for k, n in sorted(seen.items()))
            + " |"
        )
    if cost is not None:
        ratio = cost["throughput_after_over_before"]
        out += [
            "",
            f"What the defences cost (`python bench/defence_overhead.py`, {cost['before']} before against "
            f"{cost['after']}, rounds alternating, concurrency {cost['concurrency']}): throughput after / before "
            + ", ".join(f"{k} {v}x" for k, v in ratio.items())
            + "; source `bench/results/defence_overhead.json`.",
        ]
    return out + [""]


def training_section(s: dict | None) -> list[str]:
    """``bench/train_scale.py``: the whole pipeline's seconds per stage against the log's size."""
    if s is None:
        return []
    out = [
        "## Training cost",
        "",
        f"`{s['command']}` on {s['cores']} cores: the whole pipeline on a generated "
        "catalogue (the same ~3,200 articles at every size, 50 purchases a user); source "
        "`bench/results/train_scale.json`.",
        "",
        "| positives | training clicks | features | ID model | generators | diffusion + gate | calibration + "
        "evaluation | export | total | val-cold NDCG@20 (served) | estimate |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(s["rows"], key=lambda r: r["positives"]):
        t = r["seconds"]
        out.append(
            f"| {r['positives']:,} | {r['train_positives']:,} | "
            + " | ".join(f"{t[k]:.0f} s" for k in ("features", "id_model", "proxy", "diffusion+gate"))
            + f" | {t['calibration'] + t['evaluation']:.0f} s | "
            f"{t['export']:.0f} s | {t['total']:.0f} s ({t['total'] / 60:.1f} min) | {r['val_cold_ndcg@20']:.4f} "
            f"({r['served']}) | {r['estimate_s']:.0f} s |"
        )
    exp = s["exponents"].get("default", {})
    if exp.get("total") is not None:
        out += [
            "",
            "Log-log slope of seconds against training clicks, per stage: "
            + ", ".join(f"{k} {v}" for k, v in exp.items() if v is not None)
            + ".",
        ]
    out += [
        "",
        "The step budgets that keep an epoch's cost from growing with the log were chosen on validation at "
        "300k purchases: the ID model's in `bench/results/train_scale_300k.md`, the generators' in "
        "`bench/results/train_scale_generator.md`; the ID model's seconds per epoch with and without its budget "
        "are in `bench/results/train_scale_timing.md`.",
    ]
    return out + [""]


def offline_table(rows: list[dict]) -> list[str]:
    """The engines' table, here and in ``bench/offline.py``'s own page; runs that timed their first batch add it."""
    timed = any(r.get("first_batch_s") is not None for r in rows)
    cols = ["engine", "items/s", "seconds", "failed rows", "cluster start (s; not in items/s)"] + (
        ["first batch out (s; start-up included)", "rows/s after it"] if timed else []
    )
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        cells = [r["engine"], r["items_per_s"], r["seconds"], r.get("failed", 0), r.get("cluster_start_s", "")]
        if timed:
            cells += [r.get("first_batch_s", ""), r.get("after_first_rows_per_s", "")]
        out.append("| " + " | ".join("" if c is None else str(c) for c in cells) + " |")
    return out


def offline_section(s: dict | None) -> list[str]:
    """``bench/offline.py``: the backfill engines and the scaling model."""
    if s is None:
        return []
    out = [
        "## Offline backfill",
        "",
        f"`{s['command']}` on {s['cores']} cores, {s['items']} items of the generated "
        "catalogue (360x540 JPEG + text each); source `bench/results/offline.json`.",
        "",
    ] + offline_table(s["rows"])
    cap = next((r["write_items_per_s"] for r in s["rows"] if "write_items_per_s" in r), None)
    out += [
        "",
        "Scaling model, items/s for N nodes (each at the 1-node rate above"
        + (f"; into one Redis capped by its measured write rate, {cap} items/s" if cap else "")
        + "):",
        "",
        "| nodes | into Parquet | into one Redis |",
        "|---|---|---|",
    ]
    out += [f"| {n} | {m['parquet']} | {m['redis']} |" for n, m in s["scaling_model"].items()]
    return out + [""]
