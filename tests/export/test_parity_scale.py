"""The export's parity check measures an output's disagreement relative to its scale once that exceeds 1: an
encoder whose activations reach 15 may differ from ONNX Runtime by 2e-4 (float32 summation order) and still pass;
an output in [0, 1] is held to the absolute tolerance as before."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from export.graphs import export_graph, parity


class Scaled(torch.nn.Module):
    def __init__(self, scale: float, offset: float = 0.0):
        super().__init__()
        self.scale, self.offset = scale, offset

    def forward(self, x):
        return x * self.scale + self.offset


@pytest.mark.parametrize("scale, expected", [(20.0, 2e-4 / 20.0), (0.5, 2e-4)])
def test_parity_is_relative_to_the_output_scale_above_one(tmp_path, scale, expected):
    path = export_graph(Scaled(scale, 2e-4), (torch.zeros(1, 4),), tmp_path / "g.onnx", ["x"], ["y"], {"x": {0: "n"}})
    x = np.linspace(0, 1, 8, dtype=np.float32).reshape(2, 4)
    assert parity(Scaled(scale), path, {"x": x}) == pytest.approx(expected, rel=1e-2)
