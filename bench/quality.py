"""Cold-start quality benchmark (MovieLens-posters by default, or any dataset): every baseline, the proxy generator on
MF and on LightGCN, and its ablations, over 3 seeds.

For each seed: split items 8:1:1, train the ID model on warm interactions, then every method
produces embeddings for the cold items (warm items keep their ID embeddings) and is scored in the
cold, warm and all-items scenarios (Recall/NDCG@10/20). Ablations retrain the generator with one
part switched off; "50% images removed" evaluates the full generator with the poster hidden for a
random half of the test-cold items. The MoDiffE rows add the diffusion expert (conditioned on the
full generator's proxy, started from the similarity anchor) and the cold-aware gate, with the gate
trained without pseudo-cold augmentation and the diffusion started from pure noise as ablations.
Writes bench/results/<out>.{json,md,png} (default quality_movielens), titled with the dataset's name.

    python bench/quality.py [--seeds 0 1 2] [--only full CB2CF ...] [--merge]   # --merge: more rows, or more seeds
    python bench/quality.py --data DIR --format generic --out quality_mydata   # your own catalogue
    python bench/quality.py --combine s0.json s1.json s2.json --out quality_x   # per-seed runs into one table
    python bench/quality.py --merge --no-default --only "CB2CF tuned" ...   # baselines tuned on validation, added

In a space coldproxy did not make (issue 38): ``--export-splits DIR`` writes each seed's warm training interactions
(what an external recommender may see; never a cold item's) and stops; a recommender of your choice writes
``DIR/seed{N}/items.parquet`` and ``users.parquet`` (``bench/external_space.py``: implicit's ALS); then
``--id-space-dir DIR`` scores every method in that space, on the same splits and metrics:

    python bench/quality.py --export-splits /tmp/splits && python bench/external_space.py /tmp/splits
    python bench/quality.py --id-space-dir /tmp/splits --only content-kNN CB2CF CLCRec --out quality_movielens_als
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from quality_methods import (
    ABLATIONS,
    CALIBRATED,
    DIFFUSION,
    FULL,
    LIGHTGCN,
    ROBUST,
    TUNABLE,
    TUNED_ROWS,
    markdown,
    plot,
    space_note,
    summarise,
)
from results_dir import RESULTS

from coldproxy.config import TrainSettings
from export.encoders import encoder_graphs
from models.data import load_dataset
from models.evaluate import evaluate_split
from models.idmodel import train_id_model
from models.items.baseline_tuning import ENSEMBLED, FAMILIES, TUNED, tune
from models.items.baselines import knn_embeddings, popularity_embeddings, random_embeddings
from models.items.candidates import fit_generator
from models.items.proxy_training import ProxyMLP, predict, tensors, train_proxy
from models.items.train import prepare, train
from models.split import cold_start_split


def served(model, features, item_emb, cold, mask=None) -> np.ndarray:
    out = item_emb.copy()
    if mask is None:
        out[cold] = predict(model, features, cold)
    else:
        model.eval()
        import torch

        with torch.no_grad():
            out[cold] = model(*tensors(features, cold, mask))["proxy"].numpy()
    return out


def export_splits(out: Path, seeds: list[int], data: dict) -> None:
    """Each seed's split as an external recommender may see it (see the module docstring): its warm training
    interactions, its warm-validation ones to tune on, the warm items and every user, as Parquet."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    for seed in seeds:
        s = TrainSettings(seed=seed, **data)
        ds = load_dataset(s)
        sp = cold_start_split(ds, seed, s.split_ratios, s.selection_holdout)
        d = out / f"seed{seed}"
        d.mkdir(parents=True, exist_ok=True)
        for name, part in (("train", sp.train), ("warm_val", sp.warm_val)):
            pq.write_table(
                pa.table(
                    {"user_id": [ds.user_ids[u] for u in part.users], "item_id": [ds.item_ids[i] for i in part.items]}
                ),
                d / f"{name}.parquet",
            )
        pq.write_table(pa.table({"item_id": [ds.item_ids[i] for i in sp.warm_items]}), d / "warm_items.parquet")
        pq.write_table(pa.table({"user_id": ds.user_ids}), d / "user_ids.parquet")
        (d / "split.json").write_text(
            json.dumps(
                {
                    "dataset": ds.name,
                    "seed": seed,
                    "ratios": list(s.split_ratios),
                    "warm_items": len(sp.warm_items),
                    "users": ds.n_users,
                    "train_interactions": len(sp.train),
                    "warm_val_interactions": len(sp.warm_val),
                    "held_out": "validation-cold and test-cold items and their interactions; warm-test interactions",
                },
                indent=2,
            )
        )
        print(
            f"seed {seed}: {len(sp.train)} training interactions over {len(sp.warm_items)} warm items, "
            f"{ds.n_users} users -> {d}"
        )


def space_settings(space_dir: Path | None, seed: int) -> dict:
    """The settings that point training at the seed's given space (none without ``--id-space-dir``)."""
    if space_dir is None:
        return {}
    d = space_dir / f"seed{seed}"
    missing = [f for f in ("items.parquet", "users.parquet") if not (d / f).exists()]
    if missing:
        raise SystemExit(f"{d}: no {missing}; make the space first (bench/external_space.py {space_dir})")
    return {"item_embeddings": d / "items.parquet", "user_embeddings": d / "users.parquet"}


def check_no_cold_vectors(result) -> None:
    """The external model must never have seen a cold item: a vector for one means the space leaks the test."""
    cold = np.concatenate([result.split.val_items, result.split.test_items])
    seen = cold[result.space.has_vector[cold]]
    if len(seen):
        raise SystemExit(
            f"the given space has vectors for {len(seen)} validation/test-cold items (e.g. "
            f"{[result.dataset.item_ids[i] for i in seen[:3]]}): it was not made from this seed's split"
        )


def default_rows(r, seed: int, space_dir: Path | None, res: dict, score) -> None:
    """What the package serves and the generator's proxy alone, with the choices the training made."""
    cold = np.concatenate([r.split.val_items, r.split.test_items])
    score(CALIBRATED, r.served_item_emb())  # what the package serves
    res["_choices"] = {
        "selection": r.metrics["selection"],
        "id_model": r.metrics["id_model"]["type"],
        "id_fallback": r.metrics["id_model"].get("fallback"),
        "calibration": {k: v for k, v in r.metrics.get("calibration", {}).items() if k != "grid"},
    }
    if space_dir is not None:  # what made the space, as its maker recorded it
        made = space_dir / f"seed{seed}" / "space.json"
        res["_choices"]["id_space"] = r.metrics["id_space"] | {
            "made_by": json.loads(made.read_text()) if made.exists() else None
        }
    print(f"seed {seed} chose on validation: {res['_choices']}", flush=True)
    score(FULL, served(r.proxy, r.features, r.item_emb, cold))  # the (validation-chosen) generator's proxy alone


def run_seed(
    seed: int, only: set[str] | None, data: dict, space_dir: Path | None = None, no_default: bool = False
) -> tuple[dict[str, dict], str]:
    """Every method's scenarios on one seed, and the dataset's name; with ``space_dir``, in the seed's given space;
    with ``no_default`` the baselines alone, fitted on the split and ID space without training the default."""
    s = TrainSettings(seed=seed, **data, **space_settings(space_dir, seed))
    want = lambda m: (only is None or m in only) and not (space_dir is not None and m == LIGHTGCN)  # noqa: E731
    fitted_alone = ("random", "popularity", *TUNABLE, *TUNED_ROWS)  # what needs no default
    if no_default and not (only and only <= set(fitted_alone)):
        raise SystemExit(f"--no-default fits only {', '.join(fitted_alone)}; asked for {sorted(only or [])}")
    r = (prepare if no_default else train)(s, encoder_graphs)
    if r.space is not None:
        check_no_cold_vectors(r)
    f, sp, U, I = r.features, r.split, r.user_emb, r.item_emb
    cold = np.concatenate([sp.val_items, sp.test_items])
    res: dict[str, dict] = {}

    def score(name, emb, users=U):
        res[name] = evaluate_split(users, emb, sp)
        every = res[name]["all"]
        print(
            f"seed {seed} {name}: cold R@20 {res[name]['cold']['recall@20']:.4f} NDCG@20 "
            f"{res[name]['cold']['ndcg@20']:.4f}"
            f" | all R@20 {every['recall@20']:.4f} NDCG@20 {every['ndcg@20']:.4f}"
            f" new-item hit@20 {every['new_item_hit_rate@20']:.4f} (all {every['hit_rate@20']:.4f})",
            flush=True,
        )

    if not no_default:
        default_rows(r, seed, space_dir, res, score)
    if want("random"):
        score("random", random_embeddings(I, cold, seed))
    if want("popularity"):
        pop_users, pop_items = popularity_embeddings(len(U), len(I), sp.train, seed)
        score("popularity", pop_items, users=pop_users)
    if want("content-kNN"):
        score("content-kNN", knn_embeddings(f, I, sp.warm_items, cold, neighbours=5))
    for name, (fn, _) in FAMILIES.items():
        if want(name):
            score(name, fn(f, sp, U, I, cold, s)[0])
    for family in TUNABLE:
        if want(family + TUNED) or want(family + ENSEMBLED):
            tuned, ensembled, res.setdefault("_tuning", {})[family] = tune(family, r, cold)
            print(f"seed {seed} {family} tuned on validation: {res['_tuning'][family]['chosen']}", flush=True)
            score(family + TUNED, tuned)
            if ensembled is not None:
                score(family + ENSEMBLED, ensembled)
    if want("skeleton MLP (BPR+MSE)"):

        def build():
            return ProxyMLP(f.text.shape[1], f.image.shape[1], U.shape[1], s.proxy_hidden, s.proxy_dropout)

        mlp, _ = train_proxy(build, f, sp, U, I, s, mse_weight=s.proxy_mse_weight, desc="skeleton MLP")
        score("skeleton MLP (BPR+MSE)", served(mlp, f, I, cold))
    if want(ROBUST):
        mask = f.mask[cold].copy()
        test = np.isin(cold, sp.test_items)
        drop = test & (np.random.default_rng(seed).random(len(cold)) < 0.5)
        mask[drop, 1] = 0.0
        score(ROBUST, served(r.proxy, f, I, cold, mask))
    for name, over in ABLATIONS.items():
        modality = {"text": f.has_text, "image": f.has_image}.get(over.get("proxy_modalities"))
        if want(name) and modality is not None and not modality.any():
            print(f"{name}: skipped, the dataset has no item with that modality", flush=True)
        elif want(name):
            # the single-modality generators training already fitted (as served: routed to the fused one
            # for items without that modality), else fitted here
            model = r.generators.get(over.get("proxy_modalities"))
            if model is None:
                model, _ = fit_generator(f, sp, U, I, s.model_copy(update=over), desc=name)
            score(name, served(model, f, I, cold))
    if any(want(m) for m in DIFFUSION):
        diffusion_rows(r, cold, score, want)
    if want(LIGHTGCN):
        sl = s.model_copy(update={"id_model": "lightgcn"})
        U2, I2, _ = train_id_model(r.dataset.n_users, r.dataset.n_items, sp, sl)
        model, _ = fit_generator(f, sp, U2, I2, sl, desc="generator on LightGCN")
        score(LIGHTGCN, served(model, f, I2, cold), users=U2)
    return res, r.dataset.name


def diffusion_rows(result, cold, score, want) -> None:
    """MoDiffE stages on top of the full generator: diffusion expert, gate, and their ablations."""
    from dataclasses import replace

    from models.gate import train_gate
    from models.items.experts import fit_experts, served_cold
    from models.samplers import sample, sampler_kwargs

    f, sp, U, I, s = result.features, result.split, result.user_emb, result.item_emb, result.settings
    n = result.dataset.n_items
    ex = result.experts or fit_experts(f, sp, U, I, predict(result.proxy, f, np.arange(n)), s)

    def with_cold(emb_cold):
        out = I.copy()
        out[cold] = emb_cold
        return out

    score(DIFFUSION[0], with_cold(0.5 * (ex.proxy[cold] + ex.diffusion[cold])))
    score(DIFFUSION[1], with_cold(served_cold(replace(ex, choice="gate"), cold)[0]))
    if want(DIFFUSION[2]):
        stacked, available = ex.stacked(I, sp.warm_items, n)
        gate, _ = train_gate(
            stacked, available, ex.features, U, sp, s.model_copy(update={"gate_aug_ratio": 0.0}), desc="gate w/o aug"
        )
        score(DIFFUSION[2], with_cold(served_cold(replace(ex, gate=gate), cold)[0]))
    if want(DIFFUSION[3]):
        kw = sampler_kwargs(s) | {"from_noise": True, "seed": s.seed}
        noisy = replace(ex, diffusion=sample(ex.denoiser, ex.anchor, ex.proxy, **kw))
        stacked, available = noisy.stacked(I, sp.warm_items, n)
        gate, _ = train_gate(stacked, available, noisy.features, U, sp, s, desc="gate, noise start")
        score(DIFFUSION[3], with_cold(served_cold(replace(noisy, gate=gate), cold)[0]))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--only", nargs="+", help="method names to run besides the full generator")
    p.add_argument("--out", default="quality_movielens", help="results file stem under bench/results")
    p.add_argument(
        "--merge", action="store_true", help="add the rows run now to the existing results file (same seeds)"
    )
    p.add_argument(
        "--no-default",
        action="store_true",
        help="fit only the baselines in --only, without training the default (with --merge its rows are kept)",
    )
    p.add_argument("--data", type=Path, help="dataset directory (default: COLDPROXY_DATA_DIR, MovieLens-posters)")
    p.add_argument("--format", choices=["movielens", "generic"], help="dataset format (COLDPROXY_DATA_FORMAT)")
    p.add_argument(
        "--combine",
        type=Path,
        nargs="+",
        help="write --out from these results files (e.g. one per "
        "seed, each run on a core of its own) instead of running",
    )
    p.add_argument(
        "--export-splits",
        type=Path,
        metavar="DIR",
        help="write each seed's warm training interactions for an external recommender to DIR/seed{N}/ and stop",
    )
    p.add_argument(
        "--id-space-dir",
        type=Path,
        metavar="DIR",
        help="score every method in the ID space each seed's "
        "DIR/seed{N}/items.parquet and users.parquet give (made from --export-splits DIR)",
    )
    a = p.parse_args()
    data = {k: v for k, v in (("data_dir", a.data), ("data_format", a.format)) if v is not None}
    t = time.time()
    if a.export_splits:
        export_splits(a.export_splits, a.seeds, data)
        return
    if a.combine:
        files = [json.loads(f.read_text()) for f in a.combine]
        seeds = [seed for f in files for seed in f["seeds"]]
        if len(set(seeds)) < len(seeds):
            raise SystemExit(f"--combine: a seed appears twice ({seeds})")
        per_seed, dataset = [run for f in files for run in f["per_seed"]], files[0]["dataset"]
        t -= sum(f["seconds"] for f in files)  # the runs' own time, not the combining's
    else:
        runs = [run_seed(seed, set(a.only) if a.only else None, data, a.id_space_dir, a.no_default) for seed in a.seeds]
        per_seed, dataset = [res for res, _ in runs], runs[0][1]
        seeds = a.seeds
    if a.merge and (RESULTS / f"{a.out}.json").exists():
        old = json.loads((RESULTS / f"{a.out}.json").read_text())
        if old["seeds"] == a.seeds:  # more rows for the same seeds
            per_seed = [prev | new for prev, new in zip(old["per_seed"], per_seed)]
        elif not set(old["seeds"]) & set(a.seeds):  # more seeds (e.g. each run on a core of its own)
            seeds, per_seed = old["seeds"] + a.seeds, old["per_seed"] + per_seed
        else:
            raise SystemExit(f"--merge needs the file's seeds ({old['seeds']}) or none of them")
    summary = summarise(per_seed)
    RESULTS.mkdir(parents=True, exist_ok=True)
    table = markdown(summary, seeds)
    (RESULTS / f"{a.out}.json").write_text(
        json.dumps(
            {"dataset": dataset, "seeds": seeds, "seconds": time.time() - t, "summary": summary, "per_seed": per_seed},
            indent=2,
            default=float,
        )
    )
    (RESULTS / f"{a.out}.md").write_text(f"# Cold-start quality, {dataset}\n" + space_note(per_seed) + table)
    plot(summary, RESULTS / f"{a.out}.png", dataset)
    print(table)
    print(f"wrote {RESULTS}/{a.out}.{{json,md,png}} in {time.time() - t:.0f}s")


if __name__ == "__main__":
    main()
