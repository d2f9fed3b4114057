"""Batched content-feature extraction for a dataset, cached on disk by encoder + data hash.

The frozen encoders are exported to ONNX once (``export.encoders.encoder_graphs``, passed in by the
caller, cached beside the features) and run with ONNX Runtime: faster than torch eager on the CPU
(bench/results/design_measurements.md), and the very graph the service runs, so training and serving
features agree by construction.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from models.encoder_sessions import Encoders
from models.encoders import IMAGE_DIM, IMAGE_ENCODER, IMAGE_STAGE_DIM, TEXT_DIM, TEXT_ENCODER, TEXT_LAYERS

FEATURES_VERSION = 3  # 2: multi-layer text states and image stage outputs; 3: large JPEGs decoded reduced (draft)
FIELDS = ("text", "image", "text_layers", "image_stages", "has_text", "has_image")


@dataclass
class Features:
    """Per-item content features, row-aligned with ``Dataset.item_ids``."""

    text: np.ndarray  # [N, 384] float32 (zeros where no text)
    image: np.ndarray  # [N, 1280] float32 (zeros where no image)
    text_layers: np.ndarray  # [N, 7, 384] float32: every layer's mean-pooled hidden state
    image_stages: np.ndarray  # [N, 784] float32: pooled outputs of the 7 stages, concatenated
    has_text: np.ndarray  # [N] bool
    has_image: np.ndarray  # [N] bool

    @property
    def mask(self) -> np.ndarray:
        """Modality-presence mask [N, 2] (text, image) as float32."""
        return np.stack([self.has_text, self.has_image], axis=1).astype(np.float32)

    def rows(self, idx: np.ndarray) -> "Features":
        return Features(*(getattr(self, k)[idx] for k in FIELDS))

    def replace(self, **fields) -> "Features":
        return Features(**({k: getattr(self, k) for k in FIELDS} | fields))


def encode_local(
    encoders: Encoders, texts: list[str], images: list[Path], batch: int, progress: bool = True
) -> tuple[np.ndarray, ...]:
    """(text, text_layers) of ``texts`` and (image, image_stages) of ``images``, ``batch`` at a time, here."""
    text, layers = (
        np.zeros((len(texts), TEXT_DIM), np.float32),
        np.zeros((len(texts), TEXT_LAYERS, TEXT_DIM), np.float32),
    )
    # texts of similar length batched together: a batch is padded to its longest (a fifth less time on MovieLens)
    order = np.argsort([len(t) for t in texts], kind="stable")
    for s in tqdm(range(0, len(texts), batch), desc="text features", disable=not progress):
        rows = order[s : s + batch]
        text[rows], layers[rows] = encoders.texts([texts[r] for r in rows])
    image, stages = np.zeros((len(images), IMAGE_DIM), np.float32), np.zeros((len(images), IMAGE_STAGE_DIM), np.float32)
    with ThreadPoolExecutor(1) as decoder:  # the next batch's files are decoded while the encoder runs this one
        upcoming = decoder.submit(encoders.decode, images[:batch])
        for s in tqdm(range(0, len(images), batch), desc="image features", disable=not progress):
            pixels = upcoming.result()
            upcoming = decoder.submit(encoders.decode, images[s + batch : s + 2 * batch])
            image[s : s + batch], stages[s : s + batch] = encoders.run_images(pixels)
    return text, layers, image, stages


EncoderGraphs = Callable[[Path], tuple[Path, Path]]  # cache_dir -> (text, image) ONNX graphs


def cache_path(ds, cache_dir: Path, max_len: int = 128) -> Path:
    """Where the dataset's features are cached: keyed by the encoders and the items' content."""
    key = f"v{FEATURES_VERSION}-{TEXT_ENCODER}-{IMAGE_ENCODER}-len{max_len}-{ds.content_key()}"
    return Path(cache_dir) / f"features-{key}.npz"


def extract_features(
    ds,
    encoder_graphs: EncoderGraphs,
    cache_dir: Path,
    max_len: int = 128,
    batch: int = 64,
    progress: bool = True,
    engine: str = "local",
    address: str | None = None,
) -> Features:
    """Encode every item's text and image; items without one get zeros and a false presence flag.
    ``encoder_graphs`` gives the encoders' ONNX graphs; it is called only when the cache misses. ``engine``: ``local``
    (this process) or ``ray`` (a Ray cluster's actors at ``address``, ``models.features_ray``): the same features."""
    cache = cache_path(ds, cache_dir, max_len)
    if cache.exists():
        z = np.load(cache)
        return Features(*(z[k] for k in FIELDS))
    text_graph, image_graph = encoder_graphs(cache_dir)
    has_text = np.array([bool(t.strip()) for t in ds.item_texts])
    has_image = np.array([p is not None for p in ds.item_images])
    text = np.zeros((ds.n_items, TEXT_DIM), dtype=np.float32)
    image = np.zeros((ds.n_items, IMAGE_DIM), dtype=np.float32)
    text_layers = np.zeros((ds.n_items, TEXT_LAYERS, TEXT_DIM), dtype=np.float32)
    image_stages = np.zeros((ds.n_items, IMAGE_STAGE_DIM), dtype=np.float32)
    ti, ii = np.flatnonzero(has_text), np.flatnonzero(has_image)
    texts, images = [ds.item_texts[i] for i in ti], [ds.item_images[i] for i in ii]
    if engine == "ray":
        from models.features_ray import encode_on_ray

        out = encode_on_ray(text_graph, image_graph, max_len, texts, images, batch, address, progress)
    else:
        out = encode_local(Encoders(text_graph, image_graph, max_len), texts, images, batch, progress)
    text[ti], text_layers[ti], image[ii], image_stages[ii] = out
    f = Features(text, image, text_layers, image_stages, has_text, has_image)
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".tmp.npz")
    np.savez(tmp, **{k: getattr(f, k) for k in FIELDS})
    tmp.replace(cache)
    return f
