"""torch -> ONNX for each serving component, and the torch-vs-ONNX-Runtime parity check.

Graph I/O names are part of the bundle contract the service relies on:

* text encoder:  input_ids, attention_mask [B, L] int64  -> text_features [B, 384], text_layers [B, 7, 384]
* image encoder: pixels [B, 3, 224, 224] float32         -> image_features [B, 1280], image_stages [B, 784]
* proxy model:   text_features, image_features, text_layers, image_stages, modality_mask [B, 2]
                 -> proxy [B, d], fusion_weights [B, 2] (text, image)
* sampler:       anchor [B, d], condition [B, d] -> diffusion [B, d]  (DPM-Solver++ steps unrolled)
* gate:          gate_features [B, 3], expert_available [B, 3], id_embedding, proxy, diffusion [B, d]
                 -> embedding [B, d], expert_weights [B, 3] (id, proxy, diffusion)
* bundle gate:   bundle_features [B, 1], item_features [B, 2], bundle_prior, bundle_diffusion, item_prior,
                 item_diffusion [B, d] -> embedding [B, 2d], view_weights, bundle_view_weights,
                 item_view_weights [B, 2]  (names in ``coldproxy.bundle_recommender``)
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

from coldproxy.bundle_recommender import GATE_INPUTS as BUNDLE_GATE_INPUTS, GATE_OUTPUTS as BUNDLE_GATE_OUTPUTS
from coldproxy.ort import make_session

OPSET = 17


def _export(module: torch.nn.Module, args: tuple, path: Path, inputs: list[str], outputs: list[str], dynamic: dict) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.onnx")
    module.eval()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module, args, str(tmp), input_names=inputs, output_names=outputs,
            dynamic_axes=dynamic, opset_version=OPSET, dynamo=False, do_constant_folding=True,
        )
    tmp.replace(path)
    return path


def export_text_encoder(encoder, path: Path) -> Path:
    ids = torch.ones(2, 8, dtype=torch.int64)
    return _export(
        encoder, (ids, torch.ones_like(ids)), path, ["input_ids", "attention_mask"], ["text_features", "text_layers"],
        {"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"}, "text_features": {0: "batch"},
         "text_layers": {0: "batch"}},
    )


def export_image_encoder(encoder, path: Path) -> Path:
    return _export(
        encoder, (torch.zeros(2, 3, 224, 224),), path, ["pixels"], ["image_features", "image_stages"],
        {"pixels": {0: "batch"}, "image_features": {0: "batch"}, "image_stages": {0: "batch"}},
    )


PROXY_INPUTS = ["text_features", "image_features", "text_layers", "image_stages", "modality_mask"]
PROXY_OUTPUTS = ["proxy", "fusion_weights"]


def export_proxy(model, path: Path) -> Path:
    """``model``: a ``models.generator.ProxyGenerator``; exported through its serving wrapper."""
    c = model.cfg
    args = (torch.zeros(2, c.text_dim), torch.zeros(2, c.image_dim), torch.zeros(2, c.n_text_layers, c.text_dim),
            torch.zeros(2, c.image_stage_dim), torch.ones(2, 2))
    dynamic = {name: {0: "batch"} for name in PROXY_INPUTS + PROXY_OUTPUTS}
    return _export(model.serving(), args, path, PROXY_INPUTS, PROXY_OUTPUTS, dynamic)


def export_sampler(module, path: Path) -> Path:
    """``module``: a ``models.samplers.UnrolledSampler`` (deterministic plan, constants baked in)."""
    d, c = module.denoiser.cfg.dim, module.denoiser.cfg.cond_dim
    return _export(module, (torch.zeros(2, d), torch.zeros(2, c)), path, SAMPLER_INPUTS, ["diffusion"],
                   {name: {0: "batch"} for name in SAMPLER_INPUTS + ["diffusion"]})


SAMPLER_INPUTS = ["anchor", "condition"]
GATE_INPUTS = ["gate_features", "expert_available", "id_embedding", "proxy", "diffusion"]
GATE_OUTPUTS = ["embedding", "expert_weights"]


def export_gate(gate, dim: int, path: Path) -> Path:
    """``gate``: a ``models.gate.ColdAwareGate``."""
    n_f, n_e = gate.lin.in_features, gate.lin.out_features
    args = (torch.zeros(2, n_f), torch.ones(2, n_e), torch.zeros(2, dim), torch.zeros(2, dim), torch.zeros(2, dim))
    return _export(gate, args, path, GATE_INPUTS, GATE_OUTPUTS, {name: {0: "batch"} for name in GATE_INPUTS + GATE_OUTPUTS})


def export_bundle_gate(gate, dim: int, path: Path) -> Path:
    """``gate``: a ``models.bundles.HierarchicalGate``."""
    n_b, n_i = gate.view_b.lin.in_features, gate.view_i.lin.in_features
    args = (torch.zeros(2, n_b), torch.zeros(2, n_i), *(torch.zeros(2, dim) for _ in range(4)))
    return _export(gate, args, path, BUNDLE_GATE_INPUTS, BUNDLE_GATE_OUTPUTS,
                   {name: {0: "batch"} for name in BUNDLE_GATE_INPUTS + BUNDLE_GATE_OUTPUTS})


@torch.no_grad()
def parity(module: torch.nn.Module, onnx_path: Path, feeds: dict[str, np.ndarray]) -> float:
    """max |torch - ONNX Runtime| over every output for the given real inputs (CPU provider)."""
    module.eval()
    want = module(*[torch.from_numpy(v) for v in feeds.values()])
    want = [w.numpy() for w in (want if isinstance(want, (tuple, list)) else (want,))]
    got = make_session(onnx_path, ["CPUExecutionProvider"]).run(None, feeds)
    return max(float(np.abs(w - g).max()) for w, g in zip(want, got))
