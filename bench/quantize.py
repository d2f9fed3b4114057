"""int8 encoders vs float32: quality on the cold split and ingestion speed, through the serving pipeline.

For the default model package and two int8 twins (``python -m export.quantize``: text encoder only, and text +
image encoders), every test-cold item's raw
text and poster go through ``service.engine.pipeline.ProxyPipeline`` -- decode, tokenise, encoders, proxy,
anchor, sampler, gate, exactly what POST /v1/items runs -- in batches of 32; the served vectors are
evaluated with the training protocol (cold and all scenarios, Recall/NDCG@20), and the encoders'
time per item is taken from the pipeline's stage histograms.

    python bench/quantize.py [--package-dir artifacts/package]

Writes bench/results/quantize.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from results_dir import RESULTS
from tqdm.auto import tqdm

from coldproxy.config import ServiceSettings, TrainSettings
from coldproxy.package import load_package
from export.quantize import ENCODERS, quantize_package
from models.data import load_dataset
from models.evaluate import evaluate_split
from models.split import cold_start_split
from service.engine.pipeline import ProxyPipeline
from service.metrics import Metrics

STAGES = ("tokenise", "text_encoder", "decode", "image_encoder")


def run(package_dir: Path, ds, split, batch: int, settings: ServiceSettings | None = None) -> dict:
    """Every test-cold item through the serving pipeline of ``package_dir`` (ONNX Runtime options from
    ``settings``): served-vector quality, items/s, encoder ms per item."""
    b = load_package(package_dir)
    metrics = Metrics()
    settings = settings or ServiceSettings()
    pipe = ProxyPipeline(b, metrics, settings.ort_options(), settings.max_image_pixels)
    items = split.test_items
    served = np.zeros((ds.n_items, b.manifest.dims.id_dim), np.float32)
    warm_row = {it: r for r, it in enumerate(b.item_ids)}
    for i, it in enumerate(ds.item_ids):
        if it in warm_row:
            served[i] = b.item_emb[warm_row[it]]
    t = time.perf_counter()
    for s in tqdm(
        range(0, len(items), batch),
        desc=f"ingest test-cold items ({b.manifest.encoders.get('quantization', 'float32')[:12]})",
    ):
        rows = items[s : s + batch]
        payload = [(ds.item_texts[i], ds.item_images[i].read_bytes() if ds.item_images[i] else None) for i in rows]
        for i, r in zip(rows, pipe.embed_many(payload)):
            served[i] = r.embedding
    wall = time.perf_counter() - t
    user_row = {u: r for r, u in enumerate(b.user_ids)}
    U = np.stack([b.user_emb[user_row[u]] for u in ds.user_ids])
    m = evaluate_split(U, served, split)
    stages = metrics.stage_seconds()
    return {
        "bundle": b.manifest.version,
        "quantization": b.manifest.encoders.get("quantization", "none (float32)"),
        "cold": {k: float(m["cold"][k]) for k in ("recall@20", "ndcg@20")},
        "all": {k: float(m["all"][k]) for k in ("recall@20", "ndcg@20")},
        "items": len(items),
        "wall_s": wall,
        "items_per_s": len(items) / wall,
        "ms_per_item": {k: 1000 * stages.get(k, 0.0) / len(items) for k in STAGES},
        "graph_bytes": {c: b.file(c).stat().st_size for c in ("text_encoder", "image_encoder")},
    }


def main() -> None:
    s = TrainSettings()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--package-dir", "--bundle-dir", type=Path, default=s.package_dir)
    p.add_argument("--batch", type=int, default=32)
    a = p.parse_args()
    variants = {"float32": a.package_dir}
    for name, comps in (("int8 text", ("text_encoder",)), ("int8 text+image", ENCODERS)):
        variants[name] = quantize_package(
            a.package_dir, a.package_dir.with_name(f"{a.package_dir.name}-{name.replace(' ', '-')}"), s, comps
        )
    ds = load_dataset(s)
    split = cold_start_split(ds, s.seed, s.split_ratios)
    out = {name: run(path, ds, split, a.batch) for name, path in variants.items()}
    f = out["float32"]
    out["change_vs_float32"] = {
        name: {
            "cold_recall@20": r["cold"]["recall@20"] - f["cold"]["recall@20"],
            "all_recall@20": r["all"]["recall@20"] - f["all"]["recall@20"],
            "speedup_items_per_s": r["items_per_s"] / f["items_per_s"],
        }
        for name, r in out.items()
        if name != "float32"
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "quantize.json").write_text(json.dumps(out, indent=2))
    lines = [
        "# int8 dynamic quantisation of the encoders (bench/quantize.py)\n",
        f"test-cold items of the default split ({f['items']}), through the serving pipeline, batches of {a.batch}\n",
        "| encoders | cold R@20 | cold N@20 | all R@20 | items/s | ms/item text enc | ms/item image enc | graph "
        "MB (text, image) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, r in ((n, out[n]) for n in variants):
        lines.append(
            f"| {name} | {r['cold']['recall@20']:.4f} | {r['cold']['ndcg@20']:.4f} | "
            f"{r['all']['recall@20']:.4f} | "
            f"{r['items_per_s']:.1f} | {r['ms_per_item']['text_encoder']:.2f} | "
            f"{r['ms_per_item']['image_encoder']:.2f} | "
            f"{r['graph_bytes']['text_encoder'] / 1e6:.1f}, {r['graph_bytes']['image_encoder'] / 1e6:.1f} |"
        )
    (RESULTS / "quantize.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(json.dumps(out["change_vs_float32"], indent=2))


if __name__ == "__main__":
    main()
