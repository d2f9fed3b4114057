"""Batched content-feature extraction for a dataset, cached on disk by encoder + data hash.

The frozen encoders are exported to ONNX once (``export.encoders.encoder_graphs``, passed in by the
caller, cached beside the features) and run with ONNX Runtime: faster than torch eager on the CPU
(bench/results/design_measurements.md), and the very graph the service runs, so training and serving
features agree by construction.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from coldproxy.graph_io import IMAGE_INPUTS
from coldproxy.ort import make_session
from coldproxy.preprocess import load_image_file
from models.encoders import IMAGE_DIM, IMAGE_ENCODER, IMAGE_STAGE_DIM, TEXT_DIM, TEXT_ENCODER, TEXT_LAYERS, tokenizer

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


def encode_texts(graph: Path, texts: list[str], max_len: int, batch: int, progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    sess, tok = make_session(graph), tokenizer(max_len)
    out = np.zeros((len(texts), TEXT_DIM), dtype=np.float32)
    layers = np.zeros((len(texts), TEXT_LAYERS, TEXT_DIM), dtype=np.float32)
    for s in tqdm(range(0, len(texts), batch), desc="text features", disable=not progress):
        out[s : s + batch], layers[s : s + batch] = sess.run(None, tok(texts[s : s + batch]))
    return out, layers


def encode_images(graph: Path, paths: list[Path], batch: int, progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    sess = make_session(graph)
    out = np.zeros((len(paths), IMAGE_DIM), dtype=np.float32)
    stages = np.zeros((len(paths), IMAGE_STAGE_DIM), dtype=np.float32)
    for s in tqdm(range(0, len(paths), batch), desc="image features", disable=not progress):
        pix = np.stack([load_image_file(p) for p in paths[s : s + batch]])
        out[s : s + batch], stages[s : s + batch] = sess.run(None, {IMAGE_INPUTS[0]: pix})
    return out, stages


EncoderGraphs = Callable[[Path], tuple[Path, Path]]  # cache_dir -> (text, image) ONNX graphs


def cache_path(ds, cache_dir: Path, max_len: int = 128) -> Path:
    """Where the dataset's features are cached: keyed by the encoders and the items' content."""
    key = f"v{FEATURES_VERSION}-{TEXT_ENCODER}-{IMAGE_ENCODER}-len{max_len}-{ds.content_key()}"
    return Path(cache_dir) / f"features-{key}.npz"


def extract_features(ds, encoder_graphs: EncoderGraphs, cache_dir: Path, max_len: int = 128, batch: int = 64,
                     progress: bool = True) -> Features:
    """Encode every item's text and image; items without one get zeros and a false presence flag.
    ``encoder_graphs`` gives the encoders' ONNX graphs; it is called only when the cache misses."""
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
    text[ti], text_layers[ti] = encode_texts(text_graph, [ds.item_texts[i] for i in ti], max_len, batch, progress)
    image[ii], image_stages[ii] = encode_images(image_graph, [ds.item_images[i] for i in ii], batch, progress)
    f = Features(text, image, text_layers, image_stages, has_text, has_image)
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".tmp.npz")
    np.savez(tmp, **{k: getattr(f, k) for k in FIELDS})
    tmp.replace(cache)
    return f
