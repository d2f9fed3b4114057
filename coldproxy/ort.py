"""ONNX Runtime session construction, shared by feature extraction and the service."""

from __future__ import annotations

from pathlib import Path

import onnxruntime as ort


def default_providers() -> list[str]:
    """CUDA when this onnxruntime build has it, CPU always as the fallback."""
    available = ort.get_available_providers()
    wanted = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return [p for p in wanted if p in available]


GRAPH_OPTIMIZATION = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}


def make_session(path: Path, providers: list[str] | None = None, intra_threads: int = 0, graph_optimization: str = "all",
                 cpu_mem_arena: bool = True, mem_pattern: bool = True) -> ort.InferenceSession:
    """``intra_threads`` 0: ONNX Runtime's default (one per core); ``graph_optimization`` one of
    GRAPH_OPTIMIZATION; ``cpu_mem_arena`` / ``mem_pattern``: ONNX Runtime's allocator arena and
    shape-pattern planning (faster repeated runs, more resident memory)."""
    so = ort.SessionOptions()
    so.graph_optimization_level = GRAPH_OPTIMIZATION[graph_optimization]
    so.intra_op_num_threads = intra_threads
    so.inter_op_num_threads = 1
    so.enable_cpu_mem_arena = cpu_mem_arena
    so.enable_mem_pattern = mem_pattern
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=providers or default_providers())
