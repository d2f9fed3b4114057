"""Where every benchmark script writes its results: ``bench/results/``, or the directory in ``COLDPROXY_BENCH_RESULTS``
(the smoke tests point it at a temporary directory, so a tiny run never overwrites a measured one)."""

import os
from pathlib import Path

RESULTS = Path(os.environ.get("COLDPROXY_BENCH_RESULTS") or Path(__file__).resolve().parent / "results")
