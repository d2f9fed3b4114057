"""int8 dynamic quantisation of a bundle's encoders: a new bundle beside the original.

The chosen encoders get int8 weights with activations quantised at run time (ONNX Runtime
``quantize_dynamic``); the proxy, sampler and gate graphs stay float32. By default only the text
encoder: its MatMuls run about twice as fast in int8 on CPU, while the image encoder's int8
convolutions (ConvInteger) ran 12x slower here than float32 (bench/quantize.py). The
new bundle has its own hashes and version (its proxies live in their own Redis namespace) and records
in ``encoders.quantization`` what was quantised and, in ``parity``, each encoder's max |int8 - fp32|
on real inputs -- informational, not bounded: the quality change is measured by
``bench/quantize.py`` on the cold split, through the serving pipeline.

    python -m export.quantize [--package-dir artifacts/package] [--out artifacts/package-int8] [--image]
"""

from __future__ import annotations

import argparse
import shutil
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from onnxruntime.quantization import QuantType, quantize_dynamic

from coldproxy.config import TrainSettings
from coldproxy.ort import make_session
from coldproxy.package import MANIFEST, load_package, replace_dir, sha256_file, staging_dir, write_manifest
from export.package import package_version, parity_inputs

ENCODERS = ("text_encoder", "image_encoder")


def quantize_package(
    src: Path, out: Path, settings: TrainSettings | None = None, components: tuple[str, ...] = ("text_encoder",)
) -> Path:
    settings = settings or TrainSettings()
    b = load_package(src)
    stage = staging_dir(Path(out))
    for f in Path(src).iterdir():
        if f.is_file() and f.name != MANIFEST:
            shutil.copy(f, stage / f.name)
    if not set(components) <= set(ENCODERS):
        raise ValueError(f"only the encoders {ENCODERS} are quantised, not {components}")
    for comp in components:
        quantize_dynamic(str(b.file(comp)), str(stage / b.file(comp).name), weight_type=QuantType.QInt8)
    text_feeds, pixel_feeds = parity_inputs(settings, settings.parity_items)
    deltas = {}
    for comp, feeds in (("text_encoder", text_feeds), ("image_encoder", pixel_feeds)):
        if comp not in components:
            continue
        want = make_session(b.file(comp), ["CPUExecutionProvider"]).run(None, feeds)
        got = make_session(stage / b.file(comp).name, ["CPUExecutionProvider"]).run(None, feeds)
        deltas[f"{comp}_int8"] = max(float(np.abs(w - g).max()) for w, g in zip(want, got))
    files = {c: sha256_file(stage / b.file(c).name) for c in b.manifest.files}
    now = datetime.now(timezone.utc)
    m = b.manifest
    manifest = m.model_copy(
        update={
            "version": package_version(files, now),
            "created_at": now.isoformat(),
            "files": files,
            "encoders": m.encoders
            | {"quantization": f"int8 dynamic ({', '.join(components)}) of model package {m.version}"},
            "parity": m.parity | deltas,
        }
    )
    write_manifest(stage, manifest)
    load_package(stage)
    return replace_dir(stage, Path(out))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        prog="python -m export.quantize", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    s = TrainSettings()
    p.add_argument("--package-dir", "--bundle-dir", type=Path, default=s.package_dir)
    p.add_argument("--out", type=Path, default=s.package_dir.with_name(s.package_dir.name + "-int8"))
    p.add_argument("--image", action="store_true", help="quantise the image encoder too (slower on CPU here)")
    a = p.parse_args(argv)
    out = quantize_package(a.package_dir, a.out, s, ENCODERS if a.image else ("text_encoder",))
    m = load_package(out).manifest
    print(
        f"int8 model package {m.version} written to {out}; max |int8 - fp32|: "
        f"{ {k: v for k, v in m.parity.items() if k.endswith('_int8')} }"
    )


if __name__ == "__main__":
    main()
