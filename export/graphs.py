"""torch -> ONNX for the proxy, sampler and gate graphs, and the torch-vs-ONNX-Runtime parity check.
The encoders' export is in ``export.encoders``; every graph's input and output names are the package
contract of ``coldproxy.graph_io``.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

from coldproxy.graph_io import (
    BUNDLE_GATE_INPUTS,
    BUNDLE_GATE_OUTPUTS,
    GATE_INPUTS,
    GATE_OUTPUTS,
    PROXY_INPUTS,
    PROXY_OUTPUTS,
    SAMPLER_INPUTS,
    SAMPLER_OUTPUTS,
)
from coldproxy.ort import make_session

OPSET = 17


def export_graph(
    module: torch.nn.Module, args: tuple, path: Path, inputs: list[str], outputs: list[str], dynamic: dict
) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.onnx")
    module.eval()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            args,
            str(tmp),
            input_names=inputs,
            output_names=outputs,
            dynamic_axes=dynamic,
            opset_version=OPSET,
            dynamo=False,
            do_constant_folding=True,
        )
    tmp.replace(path)
    return path


def export_proxy(model, path: Path, serving=None) -> Path:
    """``model``: a ``models.items.generator.ProxyGenerator``; exported through its serving wrapper, or
    ``serving`` when given (the wrapper with a calibration on top)."""
    c = model.cfg
    args = (
        torch.zeros(2, c.text_dim),
        torch.zeros(2, c.image_dim),
        torch.zeros(2, c.n_text_layers, c.text_dim),
        torch.zeros(2, c.image_stage_dim),
        torch.ones(2, 2),
    )
    dynamic = {name: {0: "batch"} for name in PROXY_INPUTS + PROXY_OUTPUTS}
    return export_graph(serving or model.serving(), args, path, PROXY_INPUTS, PROXY_OUTPUTS, dynamic)


def export_sampler(module, path: Path) -> Path:
    """``module``: a ``models.samplers.UnrolledSampler`` (deterministic plan, constants baked in)."""
    d, c = module.denoiser.cfg.dim, module.denoiser.cfg.cond_dim
    return export_graph(
        module,
        (torch.zeros(2, d), torch.zeros(2, c)),
        path,
        SAMPLER_INPUTS,
        SAMPLER_OUTPUTS,
        {name: {0: "batch"} for name in SAMPLER_INPUTS + SAMPLER_OUTPUTS},
    )


def export_gate(gate, dim: int, path: Path) -> Path:
    """``gate``: a ``models.gate.ColdAwareGate`` over the experts of ``coldproxy.experts.EXPERTS``, or a
    wrapper of one with the same inputs."""
    n_f, n_e = gate.lin.in_features, gate.lin.out_features
    args = (torch.zeros(2, n_f), torch.ones(2, n_e), *(torch.zeros(2, dim) for _ in range(n_e)))
    return export_graph(
        gate, args, path, GATE_INPUTS, GATE_OUTPUTS, {name: {0: "batch"} for name in GATE_INPUTS + GATE_OUTPUTS}
    )


def export_bundle_gate(gate, dim: int, path: Path) -> Path:
    """``gate``: a ``models.bundles.model.HierarchicalGate``."""
    n_b, n_i = gate.view_b.lin.in_features, gate.view_i.lin.in_features
    args = (torch.zeros(2, n_b), torch.zeros(2, n_i), *(torch.zeros(2, dim) for _ in range(4)))
    return export_graph(
        gate,
        args,
        path,
        BUNDLE_GATE_INPUTS,
        BUNDLE_GATE_OUTPUTS,
        {name: {0: "batch"} for name in BUNDLE_GATE_INPUTS + BUNDLE_GATE_OUTPUTS},
    )


@torch.no_grad()
def parity(module: torch.nn.Module, onnx_path: Path, feeds: dict[str, np.ndarray]) -> float:
    """max |torch - ONNX Runtime| over every output for the given real inputs (CPU provider), each output's relative
    to its scale where that exceeds 1 (|delta| / max(1, max |torch|)): float32 kernels that sum in another order
    differ by a few ulps of the values, so an encoder whose activations reach 15 (the generated catalogue's pictures)
    differs by more than 1e-4 absolutely while agreeing to 1e-5 of its range."""
    module.eval()
    want = module(*[torch.from_numpy(v) for v in feeds.values()])
    want = [w.numpy() for w in (want if isinstance(want, (tuple, list)) else (want,))]
    got = make_session(onnx_path, ["CPUExecutionProvider"]).run(None, feeds)
    return max(float(np.abs(w - g).max() / max(1.0, float(np.abs(w).max()))) for w, g in zip(want, got))
