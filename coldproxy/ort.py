"""ONNX Runtime session construction, shared by feature extraction and the service."""

from __future__ import annotations

from pathlib import Path

import onnxruntime as ort


def default_providers() -> list[str]:
    """CUDA when this onnxruntime build has it, CPU always as the fallback."""
    available = ort.get_available_providers()
    wanted = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return [p for p in wanted if p in available]


def make_session(path: Path, providers: list[str] | None = None, intra_threads: int = 0) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.intra_op_num_threads = intra_threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=providers or default_providers())
