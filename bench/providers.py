"""ONNX Runtime execution providers compared on the serving pipeline: CPU, and CUDA where this
onnxruntime build has it (``onnxruntime-gpu``).

Real posters + texts (the MovieLens-posters folder, or a slice of it with the same layout) go through
``service.engine.pipeline.ProxyPipeline`` -- decode, tokenise, encoders, proxy, anchor, sampler, gate, what
POST /v1/items runs -- in batches of each size given, once per variant: the CPU provider; the CUDA
provider as the service configures it (float32, HEURISTIC cuDNN search); with TF32
(``COLDPROXY_ORT_CUDA_TF32``); and with EXHAUSTIVE search (``COLDPROXY_ORT_CUDA_CONV_ALGO_SEARCH``).
For each: the providers the sessions really got, items/s, ms per item by stage, the first call at
each new batch size (what a fresh server pays for a new shape), and the largest difference between
its vectors and the CPU provider's for the same items.

    python bench/providers.py [--items 512] [--batches 1 8 32 64] [--data DIR] [--name providers]

Prints a table; writes bench/results/<name>.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
from results_dir import RESULTS
from tqdm.auto import tqdm

from coldproxy.config import DEFAULT_DATASETS, ServiceSettings, usable_cores
from coldproxy.ort import CPU, CUDA, default_providers
from coldproxy.package import load_package
from loadtest.payloads import Payloads
from service.engine.pipeline import ProxyPipeline
from service.metrics import Metrics

STAGES = ("decode", "tokenise", "text_encoder", "image_encoder", "proxy", "anchor", "sampler", "gate")


def gpu_name() -> str | None:
    if not shutil.which("nvidia-smi"):
        return None
    out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True)
    return out.stdout.strip() or None


def variants() -> dict[str, dict]:
    """label -> make_session options beyond the service's defaults."""
    out = {"cpu": {"providers": [CPU]}}
    if CUDA in default_providers():
        cuda = {"providers": [CUDA, CPU], "cuda_conv_algo_search": "HEURISTIC", "cuda_tf32": False}
        out |= {
            "cuda": cuda,
            "cuda-tf32": cuda | {"cuda_tf32": True},
            "cuda-exhaustive": cuda | {"cuda_conv_algo_search": "EXHAUSTIVE"},
        }
    return out


def run_variant(
    package, payload: list[tuple[str, bytes | None]], batches: list[int], ort_opts: dict, max_pixels: int
) -> dict:
    metrics = Metrics()
    t = time.perf_counter()
    pipe = ProxyPipeline(package, metrics, ort_opts, max_pixels)
    out = {
        "load_s": time.perf_counter() - t,
        "providers": {
            g: s.get_providers()[0]
            for g, s in (("text_encoder", pipe.text), ("image_encoder", pipe.image), ("proxy", pipe.proxy))
        },
        "by_batch": {},
    }
    vectors = None
    for b in batches:
        first = time.perf_counter()
        pipe.embed_many(payload[:b])
        first = time.perf_counter() - first
        before = metrics.stage_seconds()
        got, t = [], time.perf_counter()
        for s in tqdm(range(0, len(payload), b), desc=f"batch {b}", leave=False):
            got += pipe.embed_many(payload[s : s + b])
        wall = time.perf_counter() - t
        after = metrics.stage_seconds()
        out["by_batch"][b] = {
            "items_per_s": len(payload) / wall,
            "first_call_ms": 1000 * first,
            "ms_per_item": {
                k: 1000 * (after.get(k, 0.0) - before.get(k, 0.0)) / len(payload) for k in STAGES if k in after
            },
        }
        vectors = {
            "served": np.stack([r.embedding for r in got]),
            "proxy": np.stack([r.parts.get("proxy", r.embedding) for r in got]),
        }
    return out, vectors


def difference(a: np.ndarray, b: np.ndarray) -> dict:
    cos = np.sum(a * b, 1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    return {
        "max_abs_diff": float(np.abs(a - b).max()),
        "min_cosine": float(cos.min()),
        "mean_cosine": float(cos.mean()),
    }


def main() -> None:
    s = ServiceSettings()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--package-dir", "--bundle-dir", type=Path, default=s.package_dir)
    p.add_argument("--data", type=Path, default=DEFAULT_DATASETS / "movielens-posters")
    p.add_argument("--items", type=int, default=512)
    p.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32, 64])
    p.add_argument("--name", default="providers")
    a = p.parse_args()
    package = load_package(a.package_dir)
    items = [it for it in Payloads.from_movielens(a.data).items if it[2] is not None][: a.items]
    payload = [(text, poster.read_bytes()) for _, text, poster in items]
    out = {
        "onnxruntime": ort.__version__,
        "available_providers": ort.get_available_providers(),
        "gpu": gpu_name(),
        "cpu_count": usable_cores(),
        "machine": platform.node(),
        "package": package.manifest.version,
        "items": len(payload),
        "batches": a.batches,
        "variants": {},
    }
    cpu_vectors = None
    for label, extra in variants().items():
        print(f"== {label}")
        res, vectors = run_variant(package, payload, a.batches, {**s.ort_options(), **extra}, s.max_image_pixels)
        if cpu_vectors is None:
            cpu_vectors = vectors
        res["vs_cpu"] = {k: difference(vectors[k], cpu_vectors[k]) for k in vectors}
        out["variants"][label] = res
    lines = [
        f"# Execution providers on the serving pipeline (bench/providers.py, `{a.name}`)\n",
        f"onnxruntime {out['onnxruntime']}, {out['cpu_count']} CPU cores, GPU: {out['gpu'] or 'none'}; "
        f"{len(payload)} MovieLens items (poster + text)\n",
        "| variant | providers got | batch | items/s | first call ms | ms/item text enc | ms/item image enc | "
        "ms/item decode | max abs diff vs CPU: proxy, served | min cosine vs CPU: served |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for label, r in out["variants"].items():
        for b, x in r["by_batch"].items():
            ms = x["ms_per_item"]
            lines.append(
                f"| {label} | {r['providers']['image_encoder']} | {b} | {x['items_per_s']:.1f} | "
                f"{x['first_call_ms']:.0f} | "
                f"{ms.get('text_encoder', 0):.2f} | {ms.get('image_encoder', 0):.2f} | "
                f"{ms.get('decode', 0):.2f} | "
                f"{r['vs_cpu']['proxy']['max_abs_diff']:.1e}, {r['vs_cpu']['served']['max_abs_diff']:.1e} | "
                f"{r['vs_cpu']['served']['min_cosine']:.4f} |"
            )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{a.name}.json").write_text(json.dumps(out, indent=2))
    (RESULTS / f"{a.name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
