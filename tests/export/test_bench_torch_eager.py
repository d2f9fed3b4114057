"""``bench/serving.py``'s torch-eager pipeline (the baseline the ONNX package is compared with) runs on today's
checkpoint: the gate over four experts, fed as the service feeds it (it crashed once the anchor became an expert)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from models.data import load_movielens

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from serving import TorchEager  # noqa: E402


def test_the_torch_eager_baseline_embeds_an_item_through_diffusion_and_the_gate(trained, train_settings, movielens_dir):
    assert (train_settings.work_dir / "experts.pt").exists()  # the full served path, not the proxy alone
    ds = load_movielens(movielens_dir).most_popular(400)
    i = next(i for i, p in enumerate(ds.item_images) if p is not None)
    pipe = TorchEager(train_settings.work_dir)
    vec = pipe(ds.item_texts[i], ds.item_images[i])
    assert vec.shape == (train_settings.dim,) and np.isfinite(vec).all() and np.abs(vec).sum() > 0
    assert pipe.flops(ds.item_texts[i], ds.item_images[i]) > 0
