"""``coldproxy`` command line: train (evaluate on a split, then refit on all the data), refit, export, serve,
train-bundles, reembed (a new package takes over the stored items), embed (a catalogue offline), sync-ids (the
recommender's latest item vectors into a running service), and ``up`` (evaluate + export what is missing, serve, and
refit in the background). The one module that imports every layer:
``coldproxy`` (settings), ``models`` (training), ``export`` (model packages) and ``service`` (the HTTP app), each only
inside its command.

Flags override the settings of ``coldproxy.config``; every other option is an environment variable
(``COLDPROXY_<NAME>``, e.g. ``COLDPROXY_PROXY_EPOCHS=20``).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

from pydantic import ValidationError

from coldproxy.config import BundleSettings, ServiceSettings, TrainSettings
from coldproxy.errors import ColdproxyError
from coldproxy_cli.flags import parser


def _train_settings(args: argparse.Namespace) -> TrainSettings:
    over = {
        k: v
        for k, v in {
            "data_dir": args.data,
            "data_format": args.format,
            "seed": args.seed,
            "max_items": args.max_items,
            "work_dir": args.work_dir,
            "package_dir": getattr(args, "package_dir", None),
            "feature_engine": getattr(args, "engine", None),
            "ray_address": getattr(args, "address", None),
            "refit": False if getattr(args, "no_refit", False) else None,
        }.items()
        if v is not None
    }
    return TrainSettings(**over)


def _evaluate(s: TrainSettings) -> None:
    """Choose every setting on the split and report the test split: the evaluation checkpoint in ``s.work_dir``."""
    from export.encoders import encoder_graphs
    from models.items.checkpoint import save_checkpoint
    from models.items.train import train

    t = time.time()
    r = train(s, encoder_graphs)
    out = save_checkpoint(r, s.work_dir)
    print(json.dumps(r.metrics["test"], indent=2))
    print(f"evaluation checkpoint written to {out} in {time.time() - t:.0f}s")


def _refit(s: TrainSettings) -> None:
    """Train again on all the data with the evaluation's choices: the refit checkpoint beside the evaluation's."""
    from export.encoders import encoder_graphs
    from models.items.checkpoint import read_metrics, refit_dir, save_checkpoint
    from models.items.refit import refit

    evaluation = read_metrics(s.work_dir)
    if evaluation is None:
        raise FileNotFoundError(f"no evaluation checkpoint in {s.work_dir}; run `coldproxy train` first")
    t = time.time()
    r = refit(s, evaluation, encoder_graphs)
    out = save_checkpoint(r, refit_dir(s.work_dir))
    print(json.dumps(r.metrics["served"], indent=2))
    print(f"refit checkpoint written to {out} in {time.time() - t:.0f}s")


def cmd_train(args) -> None:
    s = _train_settings(args)
    _evaluate(s)
    if s.refit:
        _refit(s)


def cmd_refit(args) -> None:
    """Refit the evaluation checkpoint on all the data (unless a refit of it is there already), then export it."""
    from models.items.checkpoint import has_refit

    s = _train_settings(args)
    if not has_refit(s.work_dir):
        _refit(s)
    cmd_export(args)


def cmd_export(args) -> None:
    from export.package import build_package
    from models.items.checkpoint import served_checkpoint

    s = _train_settings(args)
    checkpoint = served_checkpoint(s.work_dir)
    out = build_package(s, checkpoint)
    kind = "the refit on all the data" if checkpoint != s.work_dir else "the evaluation split's training part"
    print(f"model package of {kind} ({checkpoint}) written to {out}: {(out / 'manifest.json').read_text()[:400]}...")


def cmd_train_bundles(args) -> None:
    from export.bundle_package import build_bundle_package
    from models.bundles.data import load_youshu
    from models.bundles.train import train_bundle_model

    over = {
        k: v
        for k, v in {
            "data_dir": getattr(args, "bundles_data", None),
            "scenario": getattr(args, "scenario", None),
            "seed": args.seed,
            "package_dir": getattr(args, "bundle_package_dir", None),
        }.items()
        if v is not None
    }
    s = BundleSettings(**over)
    t = time.time()
    m = train_bundle_model(load_youshu(s.data_dir, s.scenario), s)
    out = build_bundle_package(m, s)
    print((out / "manifest.json").read_text()[:600])
    print(f"bundle model package written to {out} in {time.time() - t:.0f}s")


def cmd_serve(args) -> None:
    import uvicorn

    from service.app import create_app
    from service.server import uvicorn_config

    over = {
        k: v
        for k, v in {"package_dir": args.package_dir, "host": args.host, "port": args.port}.items()
        if v is not None
    }
    if args.allow_memory_store:
        over["allow_memory_store"] = True
    settings = ServiceSettings(**over)
    uvicorn.Server(uvicorn_config(create_app(settings), settings)).run()


def cmd_reembed(args) -> None:
    """Re-embed every stored item (its kept content features) for another package with the same encoders,
    offline, e.g. as a job before a rollout; resumable, and never overwriting what is there."""
    import asyncio

    from tqdm import tqdm

    from service.metrics import Metrics
    from service.rollout import backfill
    from service.serving import Serving

    settings = ServiceSettings(micro_batching=False)

    async def run() -> dict:
        target = await Serving.open(settings, Metrics(), args.to_package, bundles=False)
        try:
            with tqdm(unit="item", desc=f"re-embedding for {target.version}") as bar:

                def progress(n: int, total: int) -> None:
                    bar.total = total
                    bar.update(n)

                report = await backfill(target, args.batch or settings.reembed_batch, progress)
            return report.as_dict() | {"version": target.version}
        finally:
            await target.close()

    print(json.dumps(asyncio.run(run())))


def cmd_embed(args) -> None:
    """A whole catalogue through the ONNX pipeline, here or on a Ray cluster, into Parquet or the service's Redis."""
    from models.data import movielens_items
    from service.offline.engines import embed_catalogue
    from service.offline.inputs import catalogue_table, read_catalogue, with_catalogue_root

    if (args.out is None) == (args.to is None):
        raise SystemExit("coldproxy embed: give one of --out DIR and --to redis")
    settings = ServiceSettings(micro_batching=False, **({"package_dir": args.package_dir} if args.package_dir else {}))
    settings = with_catalogue_root(settings, args.data)
    movielens = args.format == "movielens" or (args.format is None and (args.data / "movies.csv").exists())
    table = catalogue_table(*movielens_items(args.data)) if movielens else read_catalogue(args.data, args.format)
    report = embed_catalogue(
        settings,
        table,
        out=args.out,
        redis=args.to == "redis",
        overwrite=args.overwrite,
        batch=args.batch,
        engine=args.engine,
        address=args.address,
        actors=args.actors,
        cpus_per_actor=args.cpus_per_actor,
        errors=args.errors,
    )
    print(json.dumps(report))


def cmd_sync_ids(args) -> None:
    """The recommender's item vectors (Parquet or .npy + ids) into a running service, in chunks of PUT
    /v1/items:id-embeddings: every replica serves them from then on. Exits 1 when any vector was refused."""
    from coldproxy.client import Client, ServiceError
    from coldproxy.id_space import read_vectors

    vectors = read_vectors(args.file, "item_id")
    totals, refused = {"stored": 0, "unchanged": 0, "failed": 0}, []
    with Client(args.url, api_key=args.api_key, timeout=120) as client:
        for start in range(0, len(vectors), args.chunk):
            chunk = dict(zip(vectors.ids[start : start + args.chunk], vectors.matrix[start : start + args.chunk]))
            try:
                out = client.put_id_embeddings(chunk, id_space=args.id_space, add_unknown=args.add_unknown)
            except ServiceError as exc:
                raise SystemExit(
                    f"coldproxy sync-ids: {exc.status} from {args.url} after {start} vectors: {str(exc.detail)[:500]}"
                ) from None
            for k in totals:
                totals[k] += getattr(out, k)
            refused += [r.model_dump(exclude_none=True) for r in out.results if r.status != 200]
    print(
        json.dumps(
            totals
            | {
                "file": vectors.source,
                "vectors": len(vectors),
                "version": out.package_version,
                "id_fingerprint": out.id_fingerprint,
                "refused": refused[:20],
            }
        )
    )
    if refused:
        raise SystemExit(1)


def cmd_up(args) -> None:
    from coldproxy_cli.children import bundles_in_background, refit_in_background, served_refit, stale_bundle_package

    s = _train_settings(args)
    if not (Path(s.work_dir) / "proxy.pt").exists():
        _evaluate(s)  # the first package; the refit follows in the background
    if not (Path(s.package_dir) / "manifest.json").exists():
        cmd_export(args)
    behind = refit_in_background(args, s) if s.refit and not served_refit(s.package_dir) else 0.0
    package = ServiceSettings().bundle_package_dir
    if not args.no_bundles and package is not None and (not package.exists() or stale_bundle_package(package)):
        youshu = BundleSettings().data_dir
        if (youshu / "bundle_item.txt").exists():
            bundles_in_background(package, behind)
        else:
            logging.getLogger("coldproxy").warning("no Youshu data at %s: serving without bundles", youshu)
    args.allow_memory_store = True
    cmd_serve(args)


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    handlers = {
        "train": cmd_train,
        "refit": cmd_refit,
        "export": cmd_export,
        "serve": cmd_serve,
        "up": cmd_up,
        "train-bundles": cmd_train_bundles,
        "embed": cmd_embed,
        "reembed": cmd_reembed,
        "sync-ids": cmd_sync_ids,
    }
    p = parser(handlers, __doc__)
    a = p.parse_args(argv)
    try:
        a.fn(a)
    except (ColdproxyError, ValidationError, FileNotFoundError, ValueError) as exc:  # a refusal: one line, no traceback
        if a.debug:
            raise
        raise SystemExit(f"coldproxy {a.cmd}: {refusal(exc)} (--debug shows where)") from None


def refusal(exc: Exception) -> str:
    """One line saying what was refused: a settings error's fields and reasons, else the exception's message."""
    if isinstance(exc, ValidationError):
        return "invalid settings: " + "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}" for e in exc.errors()
        )
    return " ".join(str(exc).split()) or type(exc).__name__


if __name__ == "__main__":
    sys.exit(main())
