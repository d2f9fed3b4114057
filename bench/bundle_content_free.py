"""The content-free bundle list, the baseline the served bundle policy must beat (issue 41): warm bundles ranked by
popularity (their training interactions), bundles without interactions by size alone, and each user's placement
offset t_u putting k of those new bundles in their top 20, k chosen on the tune split (0, off, tried first) -- the
served model's serving policy with no model and no content at all. No training, so no seeds: one value per split.

    python bench/bundle_content_free.py [--scenarios cold warm all]   # -> bench/results/bundles_content_free.json
"""

from __future__ import annotations

import argparse
import json

import numpy as np
from results_dir import RESULTS

from coldproxy.config import BundleSettings
from models.bundles.backbone import evaluate
from models.bundles.calibration import placement_offsets, placement_pool, placement_tops, served_users
from models.bundles.data import load_youshu


def content_free(scenario: str, settings: BundleSettings) -> dict:
    d = load_youshu(settings.data_dir, scenario)
    counts = d.bundle_counts()
    new = counts == 0
    # a user [1 ; 1 ; t_u] against a bundle [popularity ; log(size) ; 1 if new]: warm by popularity, new by size + t_u
    bundles = np.stack(
        [np.where(new, 0.0, np.log1p(counts)), np.where(new, np.log(np.maximum(d.bundle_sizes(), 1)), 0.0), new], axis=1
    ).astype(np.float32)
    users = np.ones((d.n_users, 1), np.float32)
    length = settings.calibration_list_length
    out = {"scenario": scenario, "by_pool": {}}
    for pool in ("all_new", "tune_new"):
        tops = placement_tops(d, users, bundles, length, pool=placement_pool(d, pool))
        offsets = {0: np.zeros(d.n_users, np.float32)} | {
            k: placement_offsets(*tops, k) for k in settings.calibration_cold_slots_grid
        }

        def scorer(t):
            return lambda us: served_users(users[us], t[us]) @ bundles.T

        tune = {k: float(evaluate(d, d.tune, scorer(t))["ndcg@20"]) for k, t in offsets.items()}
        k = max(tune, key=lambda c: (tune[c], -c))  # the smallest k of the best
        test = evaluate(d, d.test, scorer(offsets[k]))
        out["by_pool"][pool] = {
            "k": k,
            "tune_ndcg@20": tune[k],
            "recall@20": float(test["recall@20"]),
            "ndcg@20": float(test["ndcg@20"]),
        }
        print(scenario, pool, json.dumps(out["by_pool"][pool]), flush=True)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scenarios", nargs="+", default=["cold", "warm", "all"])
    a = p.parse_args()
    s = BundleSettings()
    report = {"command": "python bench/bundle_content_free.py", "runs": {sc: content_free(sc, s) for sc in a.scenarios}}
    (RESULTS / "bundles_content_free.json").write_text(json.dumps(report, indent=2))
    print(f"wrote {RESULTS / 'bundles_content_free.json'}")


if __name__ == "__main__":
    main()
