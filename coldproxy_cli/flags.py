"""The ``coldproxy`` command line's flags: one function per subcommand, and the parser they make
(``coldproxy_cli.commands`` holds what each subcommand does)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path


def data_flags(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--data", type=Path, help="dataset directory (COLDPROXY_DATA_DIR)")
    sp.add_argument("--format", choices=["movielens", "generic"], help="dataset format (COLDPROXY_DATA_FORMAT)")
    sp.add_argument("--seed", type=int)
    sp.add_argument("--max-items", type=int, help="keep the N most popular items")
    sp.add_argument("--work-dir", type=Path, help="checkpoint directory (COLDPROXY_WORK_DIR)")
    sp.add_argument(
        "--package-dir",
        "--bundle-dir",
        type=Path,
        help="model package directory (COLDPROXY_PACKAGE_DIR; --bundle-dir: its deprecated name)",
    )


def serve_flags(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--host")
    sp.add_argument("--port", type=int)
    sp.add_argument("--allow-memory-store", action="store_true", help="demo: run without Redis")


def no_refit_flag(sp: argparse.ArgumentParser) -> None:
    sp.add_argument(
        "--no-refit",
        action="store_true",
        help="serve the evaluation split's package: no refit on "
        "all the data (COLDPROXY_REFIT=false; the benchmarks measure that package)",
    )


def train_flags(sp: argparse.ArgumentParser) -> None:
    data_flags(sp)
    no_refit_flag(sp)
    sp.add_argument(
        "--engine",
        choices=["local", "ray"],
        help="where the encoders' pass runs on a feature-cache "
        "miss (COLDPROXY_FEATURE_ENGINE): here, or a Ray cluster's actors",
    )
    sp.add_argument(
        "--address", help="--engine ray: the cluster (COLDPROXY_RAY_ADDRESS; default: RAY_ADDRESS, else a local one)"
    )


def serve_command_flags(sp: argparse.ArgumentParser) -> None:
    sp.add_argument(
        "--package-dir", "--bundle-dir", type=Path, help="model package directory (--bundle-dir: its deprecated name)"
    )
    serve_flags(sp)


def up_flags(sp: argparse.ArgumentParser) -> None:
    data_flags(sp)
    no_refit_flag(sp)
    serve_flags(sp)
    sp.add_argument("--no-bundles", action="store_true", help="do not train the bundle model package when missing")


def train_bundles_flags(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--bundles-data", type=Path, help="Youshu directory (COLDPROXY_BUNDLES_DATA_DIR)")
    sp.add_argument("--scenario", choices=["cold", "warm", "all"], help="split trained on (COLDPROXY_BUNDLES_SCENARIO)")
    sp.add_argument("--seed", type=int)
    sp.add_argument(
        "--bundle-package-dir",
        "--package-dir",
        dest="bundle_package_dir",
        type=Path,
        help="output (COLDPROXY_BUNDLES_PACKAGE_DIR; --package-dir here: deprecated, it names the "
        "item model package everywhere else)",
    )


def embed_flags(sp: argparse.ArgumentParser) -> None:
    sp.add_argument(
        "--data",
        type=Path,
        required=True,
        help="the catalogue: a directory with items.csv "
        "(or MovieLens' movies.csv), or a Parquet table of item_id, text, image (a path or a URI)",
    )
    sp.add_argument("--format", choices=["movielens", "generic", "parquet"], help="default: from --data")
    sp.add_argument("--package-dir", type=Path, help="model package (COLDPROXY_PACKAGE_DIR)")
    sp.add_argument("--out", type=Path, help="Parquet dataset directory to write (a rerun skips what it holds)")
    sp.add_argument("--to", choices=["redis"], help="store into the service's Redis instead")
    sp.add_argument("--batch", type=int, default=64, help="items per graph call")
    sp.add_argument("--overwrite", action="store_true", help="--to redis: replace items already stored")
    sp.add_argument(
        "--engine",
        choices=["local", "ray"],
        default="local",
        help="local: this process, every usable core; ray: a Ray cluster's actors (pip install 'coldproxy[ray]')",
    )
    sp.add_argument("--address", help="--engine ray: the cluster (default: RAY_ADDRESS, else a local one)")
    sp.add_argument("--actors", type=int, help="--engine ray: actors (default: the cluster's CPUs / --cpus-per-actor)")
    sp.add_argument(
        "--cpus-per-actor", type=int, default=1, help="--engine ray: CPUs (decode and ONNX Runtime threads) per actor"
    )
    sp.add_argument(
        "--errors", type=Path, help="the failed rows' table (default: beside --out, or embed.errors.parquet)"
    )


def reembed_flags(sp: argparse.ArgumentParser) -> None:
    sp.add_argument(
        "--to-package",
        "--to-bundle",
        dest="to_package",
        type=Path,
        required=True,
        help="the model package to re-embed for (--to-bundle: its deprecated name, goes in the next release)",
    )
    sp.add_argument("--batch", type=int, help="items per graph call (COLDPROXY_REEMBED_BATCH)")


def sync_ids_flags(sp: argparse.ArgumentParser) -> None:
    sp.add_argument(
        "file", type=Path, help="item vectors: Parquet (item_id, embedding) or NAME.npy beside NAME.ids.txt"
    )
    sp.add_argument("--url", default="http://127.0.0.1:8000", help="the service")
    sp.add_argument("--api-key", help="an admin key (default: COLDPROXY_API_KEY)")
    sp.add_argument(
        "--add-unknown",
        action="store_true",
        help="add items the service does not know (else each fails alone with 404)",
    )
    sp.add_argument("--id-space", help="the ID space fingerprint the vectors are of (GET /v1/model); checked")
    sp.add_argument(
        "--chunk", type=int, default=1000, help="vectors per request (at most the service's COLDPROXY_MAX_ID_VECTORS)"
    )


SUBCOMMANDS: tuple[tuple[str, str, Callable[[argparse.ArgumentParser], None]], ...] = (
    (
        "train",
        "evaluate on a split (every choice on validation, test reported), then refit on all the data with "
        "those choices; write the checkpoints",
        train_flags,
    ),
    ("refit", "refit the evaluation checkpoint on all the data, then export it", data_flags),
    (
        "export",
        "export the checkpoint (the refit when there is one) to an ONNX model package, parity-checked",
        data_flags,
    ),
    ("serve", "serve a model package over HTTP", serve_command_flags),
    ("up", "evaluate and export if missing, serve, and refit on all the data in the background", up_flags),
    ("train-bundles", "train the bundle model (Youshu, MoDiffE) and export its package", train_bundles_flags),
    ("embed", "embed a whole catalogue offline into a Parquet file or the service's Redis store", embed_flags),
    ("reembed", "re-embed every stored new item for another model package with the same encoders", reembed_flags),
    ("sync-ids", "send your recommender's latest item vectors to a running service", sync_ids_flags),
)


def parser(handlers: dict[str, Callable], description: str | None = None) -> argparse.ArgumentParser:
    """``coldproxy``'s parser: each subcommand with ``--debug``, its own flags, and ``fn`` = ``handlers[name]``."""
    p = argparse.ArgumentParser(prog="coldproxy", description=description)
    sub = p.add_subparsers(dest="cmd", required=True)
    for name, helptext, flags in SUBCOMMANDS:
        sp = sub.add_parser(name, help=helptext)
        sp.set_defaults(fn=handlers[name])
        sp.add_argument("--debug", action="store_true", help="show the traceback when the command refuses")
        flags(sp)
    return p
