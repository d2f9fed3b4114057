"""Content features: the encoders' outputs for an item, everything the graphs after the encoders read
(text features, text layer states, image features, image stage features, modality mask), packed as one
flat row per item. The service keeps them in Redis beside each new item's proxy, so that a new model
package with the same encoders re-embeds every stored item without its original image or text.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def feature_width(dims) -> int:
    """Floats in one packed row for a package's ``Dims``."""
    return dims.text_dim + dims.image_dim + dims.text_layers * dims.text_dim + dims.image_stage_dim + 2


@dataclass(frozen=True)
class ContentFeatures:
    """A batch of items' encoder outputs (``n`` rows each)."""

    text: np.ndarray  # (n, text_dim)
    image: np.ndarray  # (n, image_dim)
    text_layers: np.ndarray  # (n, text_layers, text_dim)
    image_stages: np.ndarray  # (n, image_stage_dim)
    mask: np.ndarray  # (n, 2): text present, image present

    @classmethod
    def zeros(cls, n: int, dims) -> "ContentFeatures":
        z = lambda *shape: np.zeros((n, *shape), np.float32)  # noqa: E731
        return cls(
            z(dims.text_dim), z(dims.image_dim), z(dims.text_layers, dims.text_dim), z(dims.image_stage_dim), z(2)
        )

    def take(self, rows: list[int]) -> "ContentFeatures":
        return ContentFeatures(
            self.text[rows], self.image[rows], self.text_layers[rows], self.image_stages[rows], self.mask[rows]
        )

    def pack(self) -> np.ndarray:
        """(n, feature_width) float32: one flat row per item."""
        n = len(self.mask)
        return np.concatenate(
            [self.text, self.image, self.text_layers.reshape(n, -1), self.image_stages, self.mask], axis=1
        ).astype(np.float32)

    @classmethod
    def unpack(cls, rows: np.ndarray, dims) -> "ContentFeatures":
        rows = np.asarray(rows, np.float32)
        if rows.ndim != 2 or rows.shape[1] != feature_width(dims):
            raise ValueError(f"content features of shape {rows.shape}, this package reads (n, {feature_width(dims)})")
        cuts = np.cumsum([dims.text_dim, dims.image_dim, dims.text_layers * dims.text_dim, dims.image_stage_dim])
        text, image, layers, stages, mask = np.split(rows, cuts, axis=1)
        return cls(text, image, layers.reshape(len(rows), dims.text_layers, dims.text_dim), stages, mask)
