"""An ID space coldproxy did not make: implicit's ALS (Hu, Koren & Volinsky 2008) on each exported split.

``python bench/quality.py --export-splits DIR`` writes, per seed, the warm training interactions the external
recommender may see (``DIR/seed{N}/train.parquet``), the warm-validation interactions to tune it on
(``warm_val.parquet``), the warm items and every user (``warm_items.parquet``, ``user_ids.parquet``). This script
fits ``implicit.als.AlternatingLeastSquares`` on each seed's training interactions, chooses its regularisation and
confidence weight on warm-validation NDCG@20 (training interactions excluded; the cold items never appear), and
writes the space in the format ``coldproxy train`` reads: ``DIR/seed{N}/items.parquet`` (item_id, embedding) and
``users.parquet`` (user_id, embedding). ``python bench/quality.py --id-space-dir DIR`` then scores every method in
it. Any other recommender can stand in for this script: it only has to write those two files.

    python bench/quality.py --export-splits /tmp/splits           # (--data DIR --format generic for another dataset)
    python bench/external_space.py /tmp/splits [--factors 64]
    python bench/quality.py --id-space-dir /tmp/splits --only content-kNN CB2CF CLCRec --out quality_movielens_als
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # implicit's advice: its own threads, BLAS single-threaded

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
from scipy.sparse import csr_matrix  # noqa: E402

from models.data import Interactions  # noqa: E402
from models.evaluate import evaluate_candidates  # noqa: E402

REGULARISATION = (0.01, 0.1, 1.0)
ALPHA = (1.0, 5.0, 20.0)


def read_ids(path: Path, column: str) -> list[str]:
    return [str(x) for x in pq.read_table(path).column(column).to_pylist()]


def read_pairs(path: Path, users: dict[str, int], items: dict[str, int]) -> Interactions:
    t = pq.read_table(path)
    return Interactions(
        np.array([users[u] for u in t.column("user_id").to_pylist()], np.int64),
        np.array([items[i] for i in t.column("item_id").to_pylist()], np.int64),
    )


def fit_als(
    train: Interactions,
    n_users: int,
    n_items: int,
    factors: int,
    regularisation: float,
    alpha: float,
    iterations: int,
    seed: int,
    threads: int,
) -> tuple[np.ndarray, np.ndarray]:
    from implicit.als import AlternatingLeastSquares

    counts = csr_matrix((np.ones(len(train), np.float32), (train.users, train.items)), shape=(n_users, n_items))
    counts.sum_duplicates()
    model = AlternatingLeastSquares(
        factors=factors,
        regularization=regularisation,
        alpha=alpha,
        iterations=iterations,
        random_state=seed,
        num_threads=threads,
        use_gpu=False,
    )
    model.fit(counts, show_progress=False)
    return np.asarray(model.user_factors, np.float32), np.asarray(model.item_factors, np.float32)


def write_vectors(path: Path, column: str, ids: list[str], matrix: np.ndarray) -> None:
    emb = pa.FixedSizeListArray.from_arrays(pa.array(matrix.reshape(-1), pa.float32()), matrix.shape[1])
    pq.write_table(pa.table({column: pa.array(ids, pa.string()), "embedding": emb.cast(pa.list_(pa.float32()))}), path)


def make_space(seed_dir: Path, factors: int, iterations: int, threads: int) -> dict:
    split = json.loads((seed_dir / "split.json").read_text())
    items = read_ids(seed_dir / "warm_items.parquet", "item_id")
    users = read_ids(seed_dir / "user_ids.parquet", "user_id")
    item_index, user_index = {x: i for i, x in enumerate(items)}, {x: i for i, x in enumerate(users)}
    train = read_pairs(seed_dir / "train.parquet", user_index, item_index)
    val = read_pairs(seed_dir / "warm_val.parquet", user_index, item_index)
    grid = {}
    for reg in REGULARISATION:
        for alpha in ALPHA:
            U, V = fit_als(train, len(users), len(items), factors, reg, alpha, iterations, split["seed"], threads)
            grid[(reg, alpha)] = evaluate_candidates(U, V, np.arange(len(items)), val, train, (20,))["ndcg@20"]
            print(
                f"{seed_dir.name}: ALS regularisation {reg:g} alpha {alpha:g}: warm-validation NDCG@20 "
                f"{grid[(reg, alpha)]:.4f}",
                flush=True,
            )
    reg, alpha = max(grid, key=grid.__getitem__)
    U, V = fit_als(train, len(users), len(items), factors, reg, alpha, iterations, split["seed"], threads)
    write_vectors(seed_dir / "items.parquet", "item_id", items, V)
    write_vectors(seed_dir / "users.parquet", "user_id", users, U)
    report = {
        "model": "implicit.als.AlternatingLeastSquares",
        "factors": factors,
        "iterations": iterations,
        "regularization": reg,
        "alpha": alpha,
        "chosen_on": "warm-validation NDCG@20",
        "warm_val_ndcg@20": grid[(reg, alpha)],
        "grid": {f"{r:g},{a:g}": v for (r, a), v in grid.items()},
    }
    (seed_dir / "space.json").write_text(json.dumps(report, indent=2))
    return report


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("splits", type=Path, help="the directory bench/quality.py --export-splits wrote")
    p.add_argument("--factors", type=int, default=64, help="dimension of the space (coldproxy's own ID model: 64)")
    p.add_argument("--iterations", type=int, default=15)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    t = time.time()
    seeds = sorted(d for d in a.splits.iterdir() if (d / "split.json").exists())
    if not seeds:
        raise SystemExit(f"no exported splits in {a.splits}; run bench/quality.py --export-splits {a.splits}")
    for d in seeds:
        report = make_space(d, a.factors, a.iterations, a.threads)
        print(
            f"{d.name}: kept regularisation {report['regularization']:g} alpha {report['alpha']:g} "
            f"(warm-validation NDCG@20 {report['warm_val_ndcg@20']:.4f}); wrote items.parquet, users.parquet"
        )
    print(f"done in {time.time() - t:.0f}s")


if __name__ == "__main__":
    main()
