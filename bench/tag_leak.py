"""How much MovieLens' user tags say about the held-out items (issue 55): the test-cold items ranked, for every test
user alike, by how many tags users wrote on them (``tags.csv``), scored like every method (cold Recall@20 and
NDCG@20 on the seeds' splits); and the tagged items' share of the test-cold items and of their positives. Tags are
written after users watched: a ranker of them reads interactions, which is why item text leaves them out by default
(``COLDPROXY_ITEM_TAGS``). No training. Prints and writes bench/results/tag_leak.json.

    python bench/tag_leak.py --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import csv
import json
from collections import Counter

import numpy as np
from results_dir import RESULTS

from coldproxy.config import TrainSettings
from models.data import load_dataset
from models.evaluate import evaluate_candidates
from models.split import cold_start_split


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = ap.parse_args()
    s = TrainSettings()
    ds = load_dataset(s)
    with (s.data_dir / "tags.csv").open(newline="", encoding="utf-8") as f:
        per_movie = Counter(row["movieId"] for row in csv.DictReader(f))
    tags = np.array([per_movie.get(i, 0) for i in ds.item_ids], np.float32)
    jitter = np.random.default_rng(0).random(ds.n_items).astype(np.float32)  # ties (untagged items) broken at random
    out = {"dataset": ds.name, "seeds": args.seeds, "per_seed": []}
    for seed in args.seeds:
        sp = cold_start_split(ds, seed, s.split_ratios, s.selection_holdout)
        scores = (tags + 1e-3 * jitter)[:, None]
        metrics = evaluate_candidates(
            np.ones((ds.n_users, 1), np.float32), scores, sp.test_items, sp.cold_test, None, (20,)
        )
        tagged = tags[sp.test_items] > 0
        positives_on_tagged = float((tags[sp.cold_test.items] > 0).mean())
        row = {
            "seed": seed,
            "cold_recall@20": metrics["recall@20"],
            "cold_ndcg@20": metrics["ndcg@20"],
            "tagged_share_of_test_cold_items": float(tagged.mean()),
            "tagged_share_of_their_positives": positives_on_tagged,
        }
        out["per_seed"].append(row)
        print(json.dumps(row))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "tag_leak.json").write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
