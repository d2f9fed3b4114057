"""The ONNX Runtime pipeline: raw text + image bytes -> proxy embedding in the ID space.

Operators, each one graph of the bundle: tokenise -> text encoder; decode -> image encoder;
proxy generator over (final features, multi-layer states, modality mask) -> (proxy, fusion
weights). A missing modality is fed as zeros and masked out (its fusion weight is 0).
Calls are synchronous; the app runs them in a worker thread, off the event loop. ``embed_many``
runs each graph once over a batch (``POST /v1/items:batch``); ``embed`` is the one-item case.
"""

from __future__ import annotations

import numpy as np

from coldproxy.bundle import Bundle
from coldproxy.ort import make_session
from coldproxy.preprocess import ImageError, TextTokenizer, decode_image, image_to_array
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
        out = self.embed_many([(text, image)])[0]
        if isinstance(out, ImageError):
            raise out
        return out

    def embed_many(self, items: list[tuple[str | None, bytes | None]]) -> list[tuple[np.ndarray, list[str], np.ndarray] | ImageError]:
        """Several items, each graph run once over the batch; an unusable image fails only its own item."""
        n, d = len(items), self.dims
        text_f = np.zeros((n, d.text_dim), np.float32)
        image_f = np.zeros((n, d.image_dim), np.float32)
        text_l = np.zeros((n, d.text_layers, d.text_dim), np.float32)
        image_s = np.zeros((n, d.image_stage_dim), np.float32)
        mask = np.zeros((n, 2), np.float32)
        errors: dict[int, ImageError] = {}
        pixels, img_rows = [], []
        for r, (_, image) in enumerate(items):
            if image is None:
                continue
            try:
                with self.metrics.time_stage("decode"):
                    pixels.append(image_to_array(decode_image(image, self.max_pixels)))
                img_rows.append(r)
            except ImageError as exc:
                errors[r] = exc
        if img_rows:
            with self.metrics.time_stage("image_encoder"):
                image_f[img_rows], image_s[img_rows] = self.image.run(None, {"pixels": np.stack(pixels)})
            self.metrics.batch_size.labels("image_encoder").observe(len(img_rows))
            mask[img_rows, 1] = 1.0
        txt_rows = [r for r, (text, _) in enumerate(items) if text is not None and r not in errors]
        if txt_rows:
            with self.metrics.time_stage("tokenise"):
                feeds = self.tokenizer([items[r][0] for r in txt_rows])
            with self.metrics.time_stage("text_encoder"):
                text_f[txt_rows], text_l[txt_rows] = self.text.run(None, feeds)
            self.metrics.batch_size.labels("text_encoder").observe(len(txt_rows))
            mask[txt_rows, 0] = 1.0
        ok = [r for r in range(n) if r not in errors]
        results: list = list(range(n))
        if ok:
            with self.metrics.time_stage("proxy"):
                out, alpha = self.proxy.run(None, {"text_features": text_f[ok], "image_features": image_f[ok],
                                                   "text_layers": text_l[ok], "image_stages": image_s[ok],
                                                   "modality_mask": mask[ok]})
            self.metrics.batch_size.labels("proxy").observe(len(ok))
            for j, r in enumerate(ok):
                present = [m for m, k in (("text", 0), ("image", 1)) if mask[r, k] > 0]
                results[r] = (out[j], present, alpha[j])
        for r, exc in errors.items():
            results[r] = exc
        return results
