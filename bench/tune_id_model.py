"""Warm-validation tuning of the ID model: for each settings override, train the ID model on seeds 0-2 and
report its best warm-validation NDCG@20 (what its early stopping looks at, over every warm item) and the
epoch of that best. Warm validation holds about a tenth of the warm clicks, far more than the
validation-cold items, so it separates settings that validation-cold cannot. Nothing here reads the
test split. Writes bench/results/<--out>.json.

    python bench/tune_id_model.py '{}' '{"id_reg": 1e-3}' '{"lightgcn_layers": 2}'
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
from results_dir import RESULTS

from coldproxy.config import TrainSettings
from models.data import load_dataset
from models.idmodel import train_id_model
from models.split import cold_start_split


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("overrides", nargs="+", help="JSON objects of TrainSettings fields")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--out", default="tune_id_model", help="results' file name under bench/results, no suffix")
    a = p.parse_args()
    base = TrainSettings()
    ds = load_dataset(base)
    splits = {seed: cold_start_split(ds, seed, base.split_ratios, base.selection_holdout) for seed in a.seeds}
    rows = []
    for raw in a.overrides:
        over, vals, epochs, t = json.loads(raw), [], [], time.time()
        for seed, sp in splits.items():
            s = base.model_copy(update={"seed": seed, **over})
            log = train_id_model(ds.n_users, ds.n_items, sp, s, progress=False)[2]
            vals.append(log["best_warm_val_ndcg@20"])
            epochs.append(max(log["history"], key=lambda r: r["warm_val_ndcg@20"])["epoch"])
        rows.append(
            {
                "override": over,
                "warm_val_ndcg@20": vals,
                "mean": float(np.mean(vals)),
                "best_epochs": epochs,
                "seconds": time.time() - t,
            }
        )
        print(
            json.dumps(over),
            f"warm-val NDCG@20 {np.mean(vals):.4f}",
            [round(v, 4) for v in vals],
            epochs,
            f"{time.time() - t:.0f}s",
            flush=True,
        )
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{a.out}.json").write_text(json.dumps({"seeds": a.seeds, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
