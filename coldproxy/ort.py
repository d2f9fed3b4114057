"""ONNX Runtime session construction, shared by feature extraction and the service."""

from __future__ import annotations

import logging
from pathlib import Path

import onnxruntime as ort

log = logging.getLogger(__name__)

CUDA, CPU = "CUDAExecutionProvider", "CPUExecutionProvider"


def default_providers() -> list[str]:
    """CUDA when this onnxruntime build has it, CPU always as the fallback."""
    available = ort.get_available_providers()
    return [p for p in (CUDA, CPU) if p in available]


GRAPH_OPTIMIZATION = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}

_cuda_libraries_loaded = False


def load_cuda_libraries() -> None:
    """onnxruntime-gpu's CUDA provider links against libcudart/libcublas/libcudnn, which pip's nvidia-*
    packages (``onnxruntime-gpu[cuda,cudnn]``) or torch install outside the loader's search path;
    ``onnxruntime.preload_dlls`` loads them from there, so the provider starts without LD_LIBRARY_PATH.
    Once per process; a failure is logged, and ONNX Runtime then falls back to the CPU."""
    global _cuda_libraries_loaded
    if _cuda_libraries_loaded or not hasattr(ort, "preload_dlls"):
        return
    _cuda_libraries_loaded = True
    try:
        ort.preload_dlls()
    except Exception as exc:  # noqa: BLE001 -- a missing library must not stop a CPU fallback
        log.warning("could not preload the CUDA libraries for ONNX Runtime: %s", exc)


def make_session(
    path: Path,
    providers: list[str] | None = None,
    intra_threads: int = 0,
    graph_optimization: str = "all",
    cpu_mem_arena: bool = True,
    mem_pattern: bool = True,
    cuda_conv_algo_search: str = "HEURISTIC",
    cuda_tf32: bool = False,
) -> ort.InferenceSession:
    """``intra_threads`` 0: ONNX Runtime's default (one per core); ``graph_optimization`` one of
    GRAPH_OPTIMIZATION; ``cpu_mem_arena`` / ``mem_pattern``: ONNX Runtime's allocator arena and
    shape-pattern planning (faster repeated runs, more resident memory); ``cuda_conv_algo_search``:
    how the CUDA provider picks a cuDNN convolution algorithm for each new input shape
    (``EXHAUSTIVE``, ``HEURISTIC`` or ``DEFAULT``); ``cuda_tf32``: let the CUDA provider round float32
    matrix products to TF32 (meant for speed on Ampere and later; for these graphs on an H100 it was not
    faster, and the vectors no longer matched the CPU's, which export checked)."""
    so = ort.SessionOptions()
    so.graph_optimization_level = GRAPH_OPTIMIZATION[graph_optimization]
    so.intra_op_num_threads = intra_threads
    so.inter_op_num_threads = 1
    so.enable_cpu_mem_arena = cpu_mem_arena
    so.enable_mem_pattern = mem_pattern
    so.log_severity_level = 3
    providers = providers or default_providers()
    if CUDA in providers:
        load_cuda_libraries()
    cuda = {"cudnn_conv_algo_search": cuda_conv_algo_search, "use_tf32": "1" if cuda_tf32 else "0"}
    with_options = [(p, cuda) if p == CUDA else p for p in providers]
    return ort.InferenceSession(str(path), so, providers=with_options)
