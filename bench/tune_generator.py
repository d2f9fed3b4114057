"""Validation-only tuning of the proxy generator: for each settings override, train on seeds 0-2 and
report validation-cold NDCG@20 (what early stopping and the choice of defaults look at). The test split is not
scored here: a tuning script that prints it invites choosing by it (bench/quality.py reports it for the settings
chosen). Writes bench/results/<--out>.json.
With ``--generator-seeds N`` each override's proxies are averaged over N generator seeds (as training
serves a candidate generator, ``COLDPROXY_GENERATOR_SEEDS``) and the average is what is scored; each
generator's best epoch is listed. With ``--selection-holdout H`` a share H of the validation-cold
items is kept from early stopping and the validation score is theirs alone, so a setting that only
lets early stopping fit validation's noise does not look better there.

    python bench/tune_generator.py '{}' '{"proxy_top_k": 2}' '{"proxy_experts": 1, "proxy_top_k": 1}'
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
from results_dir import RESULTS

from coldproxy.config import TrainSettings
from export.encoders import encoder_graphs
from models.data import load_dataset
from models.evaluate import validation_cold_ndcg
from models.features import extract_features
from models.idmodel import train_id_model
from models.items.candidates import fit_generator
from models.items.proxy_training import predict
from models.split import cold_start_split
from models.training import nth_seed


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("overrides", nargs="+", help="JSON objects of TrainSettings fields")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--generator-seeds", type=int, default=1, help="generators averaged per override and seed")
    p.add_argument("--out", default="tune_generator", help="results' file name under bench/results, no suffix")
    p.add_argument(
        "--selection-holdout",
        type=float,
        default=0.0,
        help="share of the validation-cold items kept "
        "from early stopping; when > 0 the score reported is theirs (COLDPROXY_SELECTION_HOLDOUT)",
    )
    a = p.parse_args()
    base = TrainSettings()
    ds = load_dataset(base)
    f = extract_features(ds, encoder_graphs, base.cache_dir, base.text_max_len, base.encode_batch)
    states = {}
    for seed in a.seeds:
        s = base.model_copy(update={"seed": seed})
        sp = cold_start_split(ds, seed, s.split_ratios, a.selection_holdout)
        states[seed] = (sp, *train_id_model(ds.n_users, ds.n_items, sp, s, progress=False)[:2])
    rows = []
    for raw in a.overrides:
        over, vals, epochs, t = json.loads(raw), [], [], time.time()
        for seed, (sp, U, I) in states.items():
            cold = np.concatenate([sp.val_items, sp.test_items])
            emb, best = I.copy(), []
            emb[cold] = 0.0
            for j in range(a.generator_seeds):
                s = base.model_copy(update={"seed": nth_seed(seed, j), **over})
                model, log = fit_generator(f, sp, U, I, s, progress=False)
                emb[cold] += predict(model, f, cold) / a.generator_seeds
                best.append(max(log["history"], key=lambda r: r["val_cold_ndcg@20"])["epoch"])
            vals.append(validation_cold_ndcg(U, emb, sp, "select"))
            epochs.append(best)
        rows.append(
            {
                "override": over,
                "val_cold_ndcg@20": vals,
                "val_mean": float(np.mean(vals)),
                "best_epochs": epochs,
                "seconds": time.time() - t,
            }
        )
        print(json.dumps(over), f"val NDCG@20 {np.mean(vals):.4f}", flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{a.out}.json").write_text(
        json.dumps(
            {
                "seeds": a.seeds,
                "generator_seeds": a.generator_seeds,
                "selection_holdout": a.selection_holdout,
                "rows": rows,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
