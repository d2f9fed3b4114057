"""``coldproxy`` command line: train, export, serve, train-bundles, and ``up`` (train + export what is
missing, then serve).

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

from coldproxy.config import ServiceSettings, TrainSettings


def _train_settings(a: argparse.Namespace) -> TrainSettings:
    over = {k: v for k, v in {
        "data_dir": a.data, "data_format": a.format, "seed": a.seed, "max_items": a.max_items,
        "work_dir": a.work_dir, "bundle_dir": getattr(a, "bundle_dir", None),
    }.items() if v is not None}
    return TrainSettings(**over)


def cmd_train(a) -> None:
    from models.train import save_checkpoint, train

    s = _train_settings(a)
    t = time.time()
    r = train(s)
    out = save_checkpoint(r, s.work_dir)
    print(json.dumps(r.metrics["test"], indent=2))
    print(f"checkpoint written to {out} in {time.time() - t:.0f}s")


def cmd_export(a) -> None:
    from export.bundle import build_bundle

    s = _train_settings(a)
    out = build_bundle(s)
    print(f"bundle written to {out}: {(out / 'manifest.json').read_text()[:400]}...")


def cmd_train_bundles(a) -> None:
    from export.bundle_recommender import build_bundle_recommender
    from models.bundles import BundleSettings, train_bundle_model
    from models.youshu import load_youshu

    over = {k: v for k, v in {"data_dir": getattr(a, "bundles_data", None), "scenario": getattr(a, "scenario", None),
                              "seed": a.seed, "package_dir": getattr(a, "package_dir", None)}.items() if v is not None}
    s = BundleSettings(**over)
    t = time.time()
    m = train_bundle_model(load_youshu(s.data_dir, s.scenario), s)
    out = build_bundle_recommender(m, s)
    print((out / "manifest.json").read_text()[:600])
    print(f"bundle recommender written to {out} in {time.time() - t:.0f}s")


def cmd_serve(a) -> None:
    import uvicorn

    from service.app import create_app

    over = {k: v for k, v in {"bundle_dir": a.bundle_dir, "host": a.host, "port": a.port}.items() if v is not None}
    if a.allow_memory_store:
        over["allow_memory_store"] = True
    s = ServiceSettings(**over)
    uvicorn.run(create_app(s), host=s.host, port=s.port, log_level="info", access_log=s.access_log)


def cmd_up(a) -> None:
    s = _train_settings(a)
    if not (Path(s.work_dir) / "proxy.pt").exists():
        cmd_train(a)
    if not (Path(s.bundle_dir) / "manifest.json").exists():
        cmd_export(a)
    package = ServiceSettings().bundle_recommender_dir
    if not a.no_bundles and package is not None and not package.exists():
        from models.bundles import BundleSettings

        youshu = BundleSettings().data_dir
        if (youshu / "bundle_item.txt").exists():
            a.package_dir = package
            cmd_train_bundles(a)
        else:
            logging.getLogger("coldproxy").warning("no Youshu data at %s: serving without bundles", youshu)
    a.allow_memory_store = True
    cmd_serve(a)


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    p = argparse.ArgumentParser(prog="coldproxy", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)

    def data_flags(sp):
        sp.add_argument("--data", type=Path, help="dataset directory (COLDPROXY_DATA_DIR)")
        sp.add_argument("--format", choices=["movielens", "generic"], help="dataset format (COLDPROXY_DATA_FORMAT)")
        sp.add_argument("--seed", type=int)
        sp.add_argument("--max-items", type=int, help="keep the N most popular items")
        sp.add_argument("--work-dir", type=Path, help="checkpoint directory (COLDPROXY_WORK_DIR)")
        sp.add_argument("--bundle-dir", type=Path, help="bundle directory (COLDPROXY_BUNDLE_DIR)")

    def serve_flags(sp):
        sp.add_argument("--host")
        sp.add_argument("--port", type=int)
        sp.add_argument("--allow-memory-store", action="store_true", help="demo: run without Redis")

    for name, fn, helptext in (
        ("train", cmd_train, "train the ID model and the proxy; write a checkpoint"),
        ("export", cmd_export, "export the checkpoint to an ONNX bundle, parity-checked"),
        ("serve", cmd_serve, "serve a bundle over HTTP"),
        ("up", cmd_up, "train and export if missing, then serve"),
        ("train-bundles", cmd_train_bundles, "train the bundle recommender (Youshu, MoDiffE) and export its package"),
    ):
        sp = sub.add_parser(name, help=helptext)
        sp.set_defaults(fn=fn)
        if name == "serve":
            sp.add_argument("--bundle-dir", type=Path)
        elif name == "train-bundles":
            sp.add_argument("--bundles-data", type=Path, help="Youshu directory (COLDPROXY_BUNDLES_DATA_DIR)")
            sp.add_argument("--scenario", choices=["cold", "warm", "all"], help="split trained on (COLDPROXY_BUNDLES_SCENARIO)")
            sp.add_argument("--seed", type=int)
            sp.add_argument("--package-dir", type=Path, help="output (COLDPROXY_BUNDLES_PACKAGE_DIR)")
        else:
            data_flags(sp)
        if name in ("serve", "up"):
            serve_flags(sp)
        if name == "up":
            sp.add_argument("--no-bundles", action="store_true", help="do not train the bundle recommender when missing")
    a = p.parse_args(argv)
    a.fn(a)


if __name__ == "__main__":
    sys.exit(main())
