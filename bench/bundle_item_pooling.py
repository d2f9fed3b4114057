"""The item level in the bundle representation (issue 56, item 3): does pooling a bundle's item-view vectors over
members^p (``item_pooling``; p = 1 is MoDiffE's mean) and CF on the user-item interactions (``item_bpr_weight``,
MoDiffE eq. 2) move the representation-only numbers? ``bench/bundle_item_view.py`` found the item level alone, pooled
over sqrt(members), at twice the representation's cold Recall@20.

Per setting (a JSON object of ``BundleSettings`` overrides), scenario and seed: stages 1-3 as ``coldproxy
train-bundles`` runs them (prior, composition, diffusion experts, the full gate), no cold calibration; the gate's
vectors scored as they are ("w/o cold calibration" of ``bench/bundles.py``: no size prior, no quota) on tune and
test, all-unrated pool.

Rule (committed before the runs): a setting is better than the default only on tune Recall@20, never on test; one
seed is an indication, not a claimed gain (that needs 3 seeds, paired, the setting ahead on the mean and on 2 of 3).
Since issue 57 the choice is the floor's (``models.decision.clears``: the item BPR is the costlier setting, pooling
costs nothing), the earlier rule's answer shown beside it; the scenario defaults it gave are in
``coldproxy.config.bundles.ITEM_LEVEL_DEFAULTS``.

    python bench/bundle_item_pooling.py '{}' '{"item_pooling": 0.5}' --scenario cold --seeds 0
    # -> bench/results/bundle_item_pooling.{json,md}
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from bundles import stages
from results_dir import RESULTS

from coldproxy.bundle_package import ColdCalibration
from coldproxy.config import BundleSettings
from models.bundles.backbone import evaluate
from models.bundles.calibration import served_users, served_vectors
from models.bundles.model import train_gates
from models.bundles.train import gate_variant

# the settings when the rule was committed (MoDiffE's mean, no item BPR, 4 BPR negatives): every run pins them under
# its override, so '{}' is that baseline after the defaults moved (coldproxy.config.bundles.ITEM_LEVEL_DEFAULTS, and
# one negative since issue 57)
BASELINE = {"item_pooling": 1.0, "item_bpr_weight": 0.0, "bpr_negatives": 4}


def run(override: dict, scenario: str, seed: int, progress: bool) -> dict:
    s = BundleSettings(scenario=scenario, seed=seed, **(BASELINE | override))
    t = time.time()
    d, prior, _, vd, ex = stages(s, progress)
    s_v, eta = gate_variant(s, scenario, "full")
    gate, log_g = train_gates(d, prior, ex, s_v, eta, progress)
    with torch.no_grad():
        gated = gate(*(torch.from_numpy(x) for x in (ex.aB, ex.aI, ex.eB, ex.dB, ex.eI, ex.dI)))[0].numpy()
    vectors, users = served_vectors(d, gated, vd.anchor, ColdCalibration()), served_users(prior.users(), 0.0)
    out = {"override": override, "scenario": scenario, "seed": seed, "gate_tune_ndcg@20": log_g["best_tune_ndcg@20"]}
    for part in ("tune", "test"):
        m = evaluate(d, getattr(d, part), lambda us: users[us] @ vectors.T)
        out[part] = {k: float(m[k]) for k in ("recall@20", "ndcg@20")}
    return out | {"seconds": round(time.time() - t, 1)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("overrides", nargs="+", help="JSON objects of BundleSettings overrides ('{}': BASELINE below)")
    p.add_argument("--scenario", default="cold", choices=["cold", "all", "warm"])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--name", default="bundle_item_pooling", help="results file stem")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    a = p.parse_args()
    rows = []
    for text in a.overrides:
        for seed in a.seeds:
            rows.append(run(json.loads(text), a.scenario, seed, not a.quiet))
            print(json.dumps(rows[-1]), flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{a.name}.json").write_text(
        json.dumps(
            {"command": " ".join(["python bench/bundle_item_pooling.py", *map(repr, a.overrides)]), "rows": rows},
            indent=1,
        )
    )
    lines = [
        f"Representation only (the gate's vectors, no calibration), {a.scenario} scenario, seeds {a.seeds}",
        "",
        "| override | seed | tune Recall@20 | tune NDCG@20 | test Recall@20 | test NDCG@20 |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| `{json.dumps(r['override'])}` | {r['seed']} | {r['tune']['recall@20']:.4f} | "
            f"{r['tune']['ndcg@20']:.4f} | {r['test']['recall@20']:.4f} | {r['test']['ndcg@20']:.4f} |"
        )
    for text in a.overrides:
        tune = [r["tune"]["recall@20"] for r in rows if r["override"] == json.loads(text)]
        lines.append(f"| `{text}` mean | | {np.mean(tune):.4f} | | | |")
    (RESULTS / f"{a.name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
