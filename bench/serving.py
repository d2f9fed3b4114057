"""Serving benchmark: one run, one machine, the default model package (artifacts/package).

Starts ``coldproxy serve`` as its own process on loopback (real Redis, a private key prefix) and
measures, in order:

(a) ingestion items/s and latency at concurrency 1, 8, 32 (POST /v1/items, real posters + texts),
    against a plain torch eager pipeline that encodes one item at a time (tokenise, MiniLM,
    EfficientNet, generator) at the same concurrency levels (a thread per concurrent caller);
(b) GET and rank (1,000 candidates) latency at a fixed open-loop request rate (and, for every load,
    the service's CPU time per request, from /proc);
(c) the encoders' + generator's FLOPs per item (torch's FLOP counter) against this machine's
    measured float32 matrix-multiply FLOP/s, and the fraction ingestion achieves;
(d) a mixed load at a fixed rate for ``--soak`` seconds with the service's RSS sampled every 5 s
    (growth after warm-up), and the peak RSS of the whole run.

Prints and writes bench/results/<name>.{json,png} (``--name``, default ``serving``).

    python bench/serving.py [--soak 300] [--rate 200] [--soak-rate 60]
    python bench/serving.py --package artifacts/package-int8-text --name serving-int8-text --soak 0
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
from results_dir import RESULTS

from coldproxy.config import DEFAULT_DATASETS, REPO_ROOT, usable_cores
from loadtest.payloads import Payloads
from loadtest.runner import Scenarios, run_load, summarise


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_server(
    port: int, prefix: str, package: Path, log: Path | None = None, timeout: float = 180
) -> subprocess.Popen:
    """``coldproxy serve`` as its own process; its output goes to ``log`` when given."""
    env = os.environ | {"COLDPROXY_REDIS_PREFIX": prefix, "COLDPROXY_PACKAGE_DIR": str(package)}
    out = open(log, "ab") if log is not None else subprocess.DEVNULL
    proc = subprocess.Popen(
        [sys.executable, "-m", "coldproxy_cli.commands", "serve", "--port", str(port)],
        env=env,
        stdout=out,
        stderr=subprocess.STDOUT if log is not None else subprocess.DEVNULL,
    )
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            raise RuntimeError("the service exited during start-up")
        time.sleep(0.5)
    proc.kill()
    raise RuntimeError("the service did not become ready")


def matmul_flops(size: int = 2048, repeats: int = 5) -> float:
    a = np.random.default_rng(0).standard_normal((size, size), dtype=np.float32)
    b = np.random.default_rng(1).standard_normal((size, size), dtype=np.float32)
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(repeats))
    return 2 * size**3 / best


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


class TorchEager:
    """The naive pipeline: the training-side torch modules, one item per call (with the diffusion
    expert and the gate when the checkpoint has them, as the service does)."""

    def __init__(self, work_dir: Path):
        import torch

        from coldproxy.anchors import AnchorIndex, content_vectors
        from models.encoders import ImageEncoder, TextEncoder, tokenizer
        from models.items.checkpoint import load_experts, load_proxy

        self.torch, self.tok = torch, tokenizer(128)
        self.text, self.image, self.gen = TextEncoder(), ImageEncoder(), load_proxy(work_dir)
        self.experts, self.content_vectors = load_experts(work_dir), content_vectors
        if self.experts is not None:  # the same served path: anchor -> DPM-Solver++ -> gate
            z = np.load(Path(work_dir) / "embeddings.npz")
            self.anchors = AnchorIndex(
                content_vectors(z["item_text"], z["item_image"], z["item_mask"]), z["item_emb"], self.experts[3]
            )

    def __call__(self, text: str, poster: Path):
        from coldproxy.preprocess import load_image_file

        torch = self.torch
        with torch.no_grad():
            t = self.tok([text])
            tf, tl = self.text(torch.from_numpy(t["input_ids"]), torch.from_numpy(t["attention_mask"]))
            imf, ims = self.image(torch.from_numpy(load_image_file(poster)[None]))
            proxy = self.gen(tf, imf, tl, ims, torch.ones(1, 2))["proxy"]
            if self.experts is None:
                return proxy[0].numpy()
            from models.samplers import sample

            den, gate, kw, _ = self.experts
            anchor = self.anchors.anchors(self.content_vectors(tf.numpy(), imf.numpy(), np.ones((1, 2), np.float32)))
            diffusion = torch.from_numpy(sample(den, anchor, proxy.numpy(), **kw))
            from coldproxy.experts import CONTENT_EXPERTS, cold_features

            # as the service serves a new item: count 0, both modalities, every content expert available
            feats = torch.from_numpy(cold_features(np.zeros(1), np.ones((1, 2), np.float32)))
            available = torch.tensor([[0.0] + [1.0] * len(CONTENT_EXPERTS)])
            return gate(
                feats,
                available,
                torch.zeros_like(proxy),
                proxy,
                diffusion,
                torch.from_numpy(np.ascontiguousarray(anchor, dtype=np.float32)),
            )[0][0].numpy()

    def flops(self, text: str, poster: Path) -> int:
        from torch.utils.flop_counter import FlopCounterMode

        with FlopCounterMode(display=False) as counter:
            self(text, poster)
        return counter.get_total_flops()


def torch_eager_levels(pipe: TorchEager, items: list, levels: list[int], count: int) -> list[dict]:
    out = []
    for c in levels:
        lat = []

        def one(k):
            _, text, poster = items[k % len(items)]
            t = time.perf_counter()
            pipe(text, poster)
            lat.append(time.perf_counter() - t)

        t0 = time.perf_counter()
        with ThreadPoolExecutor(c) as pool:
            list(pool.map(one, range(count)))
        wall = time.perf_counter() - t0
        out.append(
            {
                "concurrency": c,
                "items": count,
                "items_per_s": count / wall,
                "p50_ms": 1000 * float(np.percentile(lat, 50)),
                "p99_ms": 1000 * float(np.percentile(lat, 99)),
            }
        )
        print("torch eager", json.dumps(out[-1]), flush=True)
    return out


def load(url: str, scenario: str, scenarios: Scenarios, server_pid: int, **kw) -> dict:
    """One bounded load; ``scenarios`` is shared by the whole run, so reads draw half their IDs from the
    cold items ingested earlier (proxies) and half from warm ones. Also the service's CPU time per
    request over the load (discovery included, a few hundred untimed GETs the first time)."""
    cpu0 = cpu_seconds(server_pid)
    samples = asyncio.run(run_load(url, scenario, scenarios, **kw))
    cpu = cpu_seconds(server_pid) - cpu0
    wall = max(x.start + x.latency for x in samples)  # from the first request, after the untimed discovery
    o = summarise(samples, wall)["overall"]
    row = {
        "scenario": scenario,
        **kw,
        "requests": o["requests"],
        "throughput_rps": o["throughput_rps"],
        "latency_ms": o["latency_ms"],
        "errors": o["errors"],
        "status": o["status"],
        "server_cpu_ms_per_request": 1000 * cpu / o["requests"],
    }
    print(json.dumps(row), flush=True)
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--port", type=int, default=8021)
    p.add_argument("--package", "--bundle", type=Path, default=REPO_ROOT / "artifacts" / "package")
    p.add_argument("--work-dir", type=Path, default=REPO_ROOT / "artifacts" / "train")
    p.add_argument("--levels", type=int, nargs="+", default=[1, 8, 32])
    p.add_argument("--ingest-items", type=int, default=384, help="items per service concurrency level")
    p.add_argument("--torch-items", type=int, default=64, help="items per torch-eager concurrency level")
    p.add_argument("--rate", type=float, default=200.0, help="fixed request rate for GET and rank")
    p.add_argument("--read-seconds", type=float, default=20.0)
    p.add_argument("--soak", type=float, default=300.0, help="seconds of mixed load for the RSS check (0: skip)")
    p.add_argument("--soak-rate", type=float, default=60.0)
    p.add_argument("--name", default="serving", help="results file name under bench/results/")
    a = p.parse_args()
    payloads = Payloads.from_movielens(DEFAULT_DATASETS / "movielens-posters")
    with_poster = [it for it in payloads.items if it[2] is not None]
    scenarios = Scenarios(payloads)
    prefix = f"bench-serving-{uuid.uuid4().hex[:6]}"
    url = f"http://127.0.0.1:{a.port}"
    report: dict = {"machine": {"cpus": usable_cores()}, "config": {k: str(v) for k, v in vars(a).items()}}
    t_all = time.time()
    server = start_server(a.port, prefix, a.package)
    try:
        report["rss_mb_after_start"] = rss_mb(server.pid)
        report["ingest_service"] = [
            dict(
                load(url, "ingest", scenarios, server.pid, requests=a.ingest_items, duration=600, concurrency=c),
                concurrency=c,
            )
            for c in a.levels
        ]
        report["read_at_rate"] = [
            load(
                url,
                sc,
                scenarios,
                server.pid,
                requests=int(a.rate * a.read_seconds),
                duration=a.read_seconds,
                rate=a.rate,
            )
            for sc in ("get", "rank")
        ]
        if a.soak > 0:
            rss, stop = [], threading.Event()

            def sample():
                t0 = time.time()
                while not stop.is_set():
                    rss.append((time.time() - t0, rss_mb(server.pid)))
                    stop.wait(5)

            th = threading.Thread(target=sample)
            th.start()
            report["soak"] = load(
                url,
                "mix",
                scenarios,
                server.pid,
                requests=int(a.soak * a.soak_rate) + 1,
                duration=a.soak,
                rate=a.soak_rate,
            )
            stop.set()
            th.join()
            warm = [m for t, m in rss if t >= min(30.0, a.soak / 4)]
            report["soak"]["rss_mb"] = rss
            report["soak"]["rss_growth_after_warmup"] = (warm[-1] - warm[0]) / warm[0] if len(warm) > 1 else None
        report["peak_rss_mb"] = rss_mb(server.pid, "VmHWM")
    finally:
        server.terminate()
        server.wait(30)
        import redis

        r = redis.Redis.from_url(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
        keys = list(r.scan_iter(f"{prefix}:*"))
        if keys:
            r.delete(*keys)

    pipe = TorchEager(a.work_dir)
    report["ingest_torch_eager"] = torch_eager_levels(pipe, with_poster, a.levels, a.torch_items)
    flops = [pipe.flops(text, poster) for _, text, poster in with_poster[:16]]
    report["flops_per_item"] = float(np.mean(flops))
    report["matmul_flops_per_s"] = matmul_flops()
    best = max(r["throughput_rps"] for r in report["ingest_service"])
    report["ingest_achieved_flops_per_s"] = best * report["flops_per_item"]
    report["ingest_fraction_of_matmul_bound"] = report["ingest_achieved_flops_per_s"] / report["matmul_flops_per_s"]
    by_c = {r["concurrency"]: r for r in report["ingest_torch_eager"]}
    report["ratios"] = {
        f"service_c{r['concurrency']}_over_torch_c{r['concurrency']}": r["throughput_rps"]
        / by_c[r["concurrency"]]["items_per_s"]
        for r in report["ingest_service"]
        if r["concurrency"] in by_c
    }
    report["ratios"]["service_c32_over_torch_c1"] = (
        next(r["throughput_rps"] for r in report["ingest_service"] if r["concurrency"] == max(a.levels))
        / by_c[1]["items_per_s"]
        if 1 in by_c
        else None
    )
    report["seconds"] = time.time() - t_all
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{a.name}.json").write_text(json.dumps(report, indent=2))
    plot(report, RESULTS / f"{a.name}.png")
    print(
        json.dumps(
            {
                k: report[k]
                for k in (
                    "ratios",
                    "flops_per_item",
                    "matmul_flops_per_s",
                    "ingest_fraction_of_matmul_bound",
                    "peak_rss_mb",
                )
            },
            indent=2,
        )
    )
    print(f"wrote {RESULTS}/{a.name}.{{json,png}} in {report['seconds']:.0f}s")


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    svc = report["ingest_service"]
    eager = {r["concurrency"]: r["items_per_s"] for r in report["ingest_torch_eager"]}
    x = np.arange(len(svc))
    a.bar(x - 0.2, [r["throughput_rps"] for r in svc], 0.4, label="service (ONNX Runtime, micro-batched)", color="#e73")
    a.bar(
        x + 0.2,
        [eager.get(r["concurrency"], 0) for r in svc],
        0.4,
        label="torch eager, one item per call",
        color="#aaa",
    )
    a.set_xticks(x, [f"c={r['concurrency']}" for r in svc])
    a.set_ylabel("items/s")
    a.set_title("ingestion throughput")
    a.legend(fontsize=8)
    if "soak" in report:
        t, m = zip(*report["soak"]["rss_mb"])
        b.plot(t, m, color="#79c")
        b.set_xlabel("s")
        b.set_ylabel("service RSS (MB)")
        b.set_title(f"RSS during {report['config']['soak']} s mixed load")
        b.set_ylim(0, max(m) * 1.2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
