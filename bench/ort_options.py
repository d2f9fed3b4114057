"""ONNX Runtime session options on the serving pipeline (one stream of batches): ingestion speed and peak RSS.

Each setting runs in its own process (so peak RSS is its own): every test-cold item of the default
split through ``service.engine.pipeline.ProxyPipeline`` in batches of 32 (bench/quantize.run), with the
``COLDPROXY_ORT_*`` values given. Writes bench/results/ort_options.json.

    python bench/ort_options.py
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from pathlib import Path

from results_dir import RESULTS

from coldproxy.config import usable_cores

CORES = usable_cores()
# one stream of batches here: the service's default thread split (cores // batch_workers) is not what this measures
SETTINGS = {
    f"all, arena, pattern, {CORES} threads": {"ort_intra_threads": CORES},
    "graph optimisation basic": {"ort_graph_optimization": "basic", "ort_intra_threads": CORES},
    "graph optimisation disabled": {"ort_graph_optimization": "disable", "ort_intra_threads": CORES},
    "no memory arena, no pattern": {"ort_cpu_mem_arena": False, "ort_mem_pattern": False, "ort_intra_threads": CORES},
    "1 intra-op thread": {"ort_intra_threads": 1},
}


def one(over: dict) -> dict:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from quantize import run

    from coldproxy.config import ServiceSettings, TrainSettings
    from models.data import load_dataset
    from models.split import cold_start_split

    s = TrainSettings()
    ds = load_dataset(s)
    r = run(s.package_dir, ds, cold_start_split(ds, s.seed, s.split_ratios), 32, ServiceSettings(**over))
    return {
        "items_per_s": r["items_per_s"],
        "ms_per_item": r["ms_per_item"],
        "cold_recall@20": r["cold"]["recall@20"],
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--one":
        print(json.dumps(one(json.loads(sys.argv[2]))))
        return
    out = {}
    for name, over in SETTINGS.items():
        r = subprocess.run(
            [sys.executable, __file__, "--one", json.dumps(over)], capture_output=True, text=True, check=True
        )
        out[name] = json.loads(r.stdout.strip().splitlines()[-1])
        m = out[name]
        print(
            f"{name:42s} {m['items_per_s']:6.1f} items/s  text {m['ms_per_item']['text_encoder']:.2f} ms  "
            f"image {m['ms_per_item']['image_encoder']:.2f} ms  peak RSS {m['peak_rss_mb']:.0f} MB  "
            f"cold R@20 {m['cold_recall@20']:.4f}",
            flush=True,
        )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "ort_options.json").write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
