"""The ONNX Runtime pipeline: raw text + image bytes -> proxy embedding in the ID space.

Operators, each one graph of the bundle: tokenise -> text encoder; decode -> image encoder;
proxy generator over (final features, multi-layer states, modality mask) -> (proxy, fusion
weights). A missing modality is fed as zeros and masked out (its fusion weight is 0).
Calls are synchronous; the app runs them in a worker thread, off the event loop.
"""

from __future__ import annotations

import numpy as np

from coldproxy.bundle import Bundle
from coldproxy.ort import make_session
from coldproxy.preprocess import TextTokenizer, decode_image, image_to_array
from service.metrics import Metrics


class ProxyPipeline:
    def __init__(self, bundle: Bundle, metrics: Metrics, providers: list[str] | None, intra_threads: int, max_pixels: int):
        m = bundle.manifest
        self.dims, self.metrics, self.max_pixels = m.dims, metrics, max_pixels
        self.tokenizer = TextTokenizer(bundle.file("tokenizer"), m.preprocessing["text_max_len"])
        self.text = make_session(bundle.file("text_encoder"), providers, intra_threads)
        self.image = make_session(bundle.file("image_encoder"), providers, intra_threads)
        self.proxy = make_session(bundle.file("proxy"), providers, intra_threads)
        self.providers = self.proxy.get_providers()

    def embed(self, text: str | None, image: bytes | None) -> tuple[np.ndarray, list[str], np.ndarray]:
        """One item -> (proxy [d], present modalities, fusion weights (text, image)).

        Raises ``coldproxy.preprocess.ImageError`` for an unusable image.
        """
        n, d = 1, self.dims
        text_f = np.zeros((n, d.text_dim), np.float32)
        image_f = np.zeros((n, d.image_dim), np.float32)
        text_l = np.zeros((n, d.text_layers, d.text_dim), np.float32)
        image_s = np.zeros((n, d.image_stage_dim), np.float32)
        mask = np.zeros((n, 2), np.float32)
        present = []
        if image is not None:
            with self.metrics.time_stage("decode"):
                pixels = image_to_array(decode_image(image, self.max_pixels))[None]
            with self.metrics.time_stage("image_encoder"):
                image_f, image_s = self.image.run(None, {"pixels": pixels})
            self.metrics.batch_size.labels("image_encoder").observe(n)
            mask[:, 1] = 1.0
            present.append("image")
        if text is not None:
            with self.metrics.time_stage("tokenise"):
                feeds = self.tokenizer([text])
            with self.metrics.time_stage("text_encoder"):
                text_f, text_l = self.text.run(None, feeds)
            self.metrics.batch_size.labels("text_encoder").observe(n)
            mask[:, 0] = 1.0
            present.insert(0, "text")
        with self.metrics.time_stage("proxy"):
            out, alpha = self.proxy.run(None, {"text_features": text_f, "image_features": image_f, "text_layers": text_l,
                                               "image_stages": image_s, "modality_mask": mask})
        self.metrics.batch_size.labels("proxy").observe(n)
        return out[0], present, alpha[0]
