"""Proxy-graph latency of the blended generator against the fused one alone (issue 21): what the blend
adds to every POST /v1/items, at the default package's widths, through ONNX Runtime on the CPU.

    python bench/blend_latency.py [--threads 1] [--batches 1 32] [--experts K]

Writes bench/results/blend_latency[-K<experts>].json (no suffix for the default K). Untrained
weights: the cost does not depend on their values.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from results_dir import RESULTS

from coldproxy.config import TrainSettings
from export.graphs import export_proxy
from models.items.generator import BlendedGenerator, GeneratorConfig, ProxyGenerator

WIDTHS = dict(text_dim=384, image_dim=1280, n_text_layers=7, image_stage_dim=784, out_dim=64)  # the default package's


def generator(modalities, experts: int) -> ProxyGenerator:
    return ProxyGenerator(GeneratorConfig(**WIDTHS, experts=experts, modalities=modalities)).eval()


def p50_ms(path: Path, batch: int, threads: int, runs: int) -> float:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    w = WIDTHS
    shapes = {
        "text_features": (batch, w["text_dim"]),
        "image_features": (batch, w["image_dim"]),
        "text_layers": (batch, w["n_text_layers"], w["text_dim"]),
        "image_stages": (batch, w["image_stage_dim"]),
    }
    feeds = {k: rng.standard_normal(v).astype(np.float32) for k, v in shapes.items()}
    feeds["modality_mask"] = np.ones((batch, 2), np.float32)
    for _ in range(10):
        sess.run(None, feeds)
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        sess.run(None, feeds)
        times.append((time.perf_counter() - t) * 1000)
    return float(np.median(times))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batches", type=int, nargs="+", default=[1, 32])
    p.add_argument("--runs", type=int, default=200)
    p.add_argument("--experts", type=int, default=TrainSettings().proxy_experts, help="adapter experts per modality")
    a = p.parse_args()
    torch.manual_seed(0)
    fused = generator((1, 1), a.experts)
    models = {
        "fused": fused,
        "blend": BlendedGenerator(
            fused,
            {"text": generator((1, 0), a.experts), "image": generator((0, 1), a.experts)},
            {"both": 0.4, "text": 0.4, "image": 0.2},
        ).eval(),
    }
    out = {"threads": a.threads, "experts": a.experts, "p50_ms": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for name, model in models.items():
            path = export_proxy(model, Path(tmp) / f"{name}.onnx")
            out["p50_ms"][name] = {str(b): p50_ms(path, b, a.threads, a.runs) for b in a.batches}
    for b in a.batches:
        print(
            f"batch {b}: fused {out['p50_ms']['fused'][str(b)]:.3f} ms, blend {out['p50_ms']['blend'][str(b)]:.3f} ms "
            "(p50)"
        )
    RESULTS.mkdir(exist_ok=True)
    name = "blend_latency" if a.experts == TrainSettings().proxy_experts else f"blend_latency-K{a.experts}"
    (RESULTS / f"{name}.json").write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
