"""The two encoder graphs' ONNX Runtime sessions (``Encoders``): a batch of texts or image files -> their features.
Below ``models.features`` (the local pass) and ``models.features_ray`` (each Ray actor), which both run it."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from coldproxy.graph_io import IMAGE_INPUTS
from coldproxy.ort import make_session
from coldproxy.preprocess import load_image_file
from models.encoders import IMAGE_DIM, IMAGE_STAGE_DIM, TEXT_DIM, TEXT_LAYERS, tokenizer


class Encoders:
    """The two encoder graphs' sessions, opened once: a batch of texts or image files -> their features. The local
    pass and each Ray actor (``models.features_ray``) run the same code."""

    def __init__(self, text_graph: Path, image_graph: Path, max_len: int):
        self.text, self.image, self.tok = make_session(text_graph), make_session(image_graph), tokenizer(max_len)

    def texts(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """[n, 384] pooled, [n, 7, 384] every layer."""
        if not texts:
            return np.zeros((0, TEXT_DIM), np.float32), np.zeros((0, TEXT_LAYERS, TEXT_DIM), np.float32)
        return tuple(self.text.run(None, self.tok(list(texts))))

    def images(self, paths: list[Path]) -> tuple[np.ndarray, np.ndarray]:
        """[n, 1280] pooled, [n, 784] the stages'."""
        return self.run_images(self.decode(paths))

    @staticmethod
    def decode(paths: list[Path]) -> np.ndarray | None:
        """The image files decoded and resized into the encoder's input batch (None for no files)."""
        return np.stack([load_image_file(Path(p)) for p in paths]) if paths else None

    def run_images(self, pixels: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """``decode``'s batch through the image encoder: [n, 1280] pooled, [n, 784] the stages'."""
        if pixels is None:
            return np.zeros((0, IMAGE_DIM), np.float32), np.zeros((0, IMAGE_STAGE_DIM), np.float32)
        return tuple(self.image.run(None, {IMAGE_INPUTS[0]: pixels}))
