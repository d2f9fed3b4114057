"""ONNX export of the frozen text and image encoders (``models.encoders``): into a model package,
and into the feature cache, where training runs the very graphs the service will (``encoder_graphs``
is what ``models.features.extract_features`` calls on a cache miss)."""

from __future__ import annotations

from pathlib import Path

import torch

from coldproxy.graph_io import IMAGE_INPUTS, IMAGE_OUTPUTS, TEXT_INPUTS, TEXT_OUTPUTS
from export.graphs import export_graph
from models.encoders import IMAGE_ENCODER, TEXT_ENCODER, ImageEncoder, TextEncoder
from models.features import FEATURES_VERSION


def export_text_encoder(encoder, path: Path) -> Path:
    ids = torch.ones(2, 8, dtype=torch.int64)
    return export_graph(
        encoder,
        (ids, torch.ones_like(ids)),
        path,
        TEXT_INPUTS,
        TEXT_OUTPUTS,
        {
            "input_ids": {0: "batch", 1: "seq"},
            "attention_mask": {0: "batch", 1: "seq"},
            "text_features": {0: "batch"},
            "text_layers": {0: "batch"},
        },
    )


def export_image_encoder(encoder, path: Path) -> Path:
    return export_graph(
        encoder,
        (torch.zeros(2, 3, 224, 224),),
        path,
        IMAGE_INPUTS,
        IMAGE_OUTPUTS,
        {"pixels": {0: "batch"}, "image_features": {0: "batch"}, "image_stages": {0: "batch"}},
    )


def encoder_graphs(cache_dir: Path) -> tuple[Path, Path]:
    """ONNX graphs of the frozen text and image encoders under ``cache_dir``, exported on first use."""
    text_path = Path(cache_dir) / "encoders" / f"{TEXT_ENCODER}-v{FEATURES_VERSION}.onnx"
    image_path = Path(cache_dir) / "encoders" / f"{IMAGE_ENCODER}-v{FEATURES_VERSION}.onnx"
    if not text_path.exists():
        export_text_encoder(TextEncoder(), text_path)
    if not image_path.exists():
        export_image_encoder(ImageEncoder(), image_path)
    return text_path, image_path
