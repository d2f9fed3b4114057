"""The ONNX Runtime pipeline: raw text + image bytes -> proxy embedding in the ID space.

Operators, each one graph of the model package: tokenise -> text encoder; decode -> image encoder;
proxy generator over (final features, multi-layer states, modality mask) -> (proxy, fusion
weights). A missing modality is fed as zeros and masked out (its fusion weight is 0). With a
diffusion expert in the package, three more steps follow: similarity anchor (FAISS over the warm
items' content, MoDiffE eq. 14) -> sampler graph (DPM-Solver++ from the anchor, conditioned on the
proxy) -> cold-aware gate graph over {ID (absent for a new item), proxy, diffusion, anchor}, whose mix is
the served embedding.
Calls are synchronous; the app runs them in worker threads, off the event loop. ``prepare`` is the
per-item CPU work (image decode), ``infer`` runs each graph once over a batch of prepared items
(the micro-batcher's batches), ``embed_many`` is both for one request's items (``/v1/items:batch``);
``from_features`` runs the graphs after the encoders alone, over stored content features (re-embedding).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from coldproxy.anchors import AnchorIndex, content_vectors
from coldproxy.errors import ImageError
from coldproxy.experts import cold_features
from coldproxy.graph_io import GATE_INPUTS, IMAGE_INPUTS, PROXY_INPUTS, SAMPLER_INPUTS
from coldproxy.ort import CUDA, make_session
from coldproxy.package import ModelPackage
from coldproxy.preprocess import IMAGE_SIZE, TextTokenizer, decode_image, image_to_array
from service.engine.features import ContentFeatures
from service.metrics import Metrics


def padded_batch(size: int) -> int:
    """The image batch shape ``n`` images run at when padding: the next power of two."""
    return 1 << max(0, size - 1).bit_length()


class ProxyPipeline:
    def __init__(
        self, package: ModelPackage, metrics: Metrics, ort: dict, max_pixels: int, pad_images: bool | None = None
    ):
        """``ort``: ``coldproxy.ort.make_session`` options (``ServiceSettings.ort_options()``).
        ``pad_images``: run the image encoder only at power-of-two batch sizes (zero rows added, their
        outputs dropped), each size in a session of its own. On the CUDA provider, cuDNN finalises
        (and compiles with NVRTC) its convolution plans again whenever a session's input shape
        changes (bench/results/design_measurements.md), so one session fed a micro-batcher's varying
        batch sizes spends most of its time there. One session per padded size sees one shape only,
        built once by ``warm_up``. None: pad when the image encoder runs on CUDA (on the CPU the
        padding would be wasted work and the extra sessions memory)."""
        m = package.manifest
        self.dims, self.metrics, self.max_pixels = m.dims, metrics, max_pixels
        self._local = threading.local()  # warm-up runs record into a throwaway Metrics, per thread
        self.tokenizer = TextTokenizer(package.file("tokenizer"), m.preprocessing["text_max_len"])
        self.text = make_session(package.file("text_encoder"), **ort)
        self.image = make_session(package.file("image_encoder"), **ort)
        self.proxy = make_session(package.file("proxy"), **ort)
        self.providers = self.proxy.get_providers()
        self.pad_images = self.image.get_providers()[0] == CUDA if pad_images is None else pad_images
        self._image_path, self._ort = package.file("image_encoder"), ort
        self._image_by_batch, self._image_lock = {1: self.image}, threading.Lock()
        self.sampler = self.gate = self.anchors = None
        self.experts: tuple[str, ...] = ()  # the gate's experts, in order
        if package.has_experts:
            self.sampler = make_session(package.file("sampler"), **ort)
            self.gate = make_session(package.file("gate"), **ort)
            self.experts = tuple(m.experts["experts"])  # packages from before the anchor expert have 3
            z = np.load(package.file("embeddings"))
            warm_vec = content_vectors(z["item_text"], z["item_image"], z["item_mask"])
            self.anchors = AnchorIndex(warm_vec, package.item_emb, package.manifest.experts["anchor_n"])

    def _image_session(self, size: int):
        """(session, batch size to run) for ``n`` images: with padding, the padded size's own session."""
        if not self.pad_images:
            return self.image, size
        b = padded_batch(size)
        with self._image_lock:
            if b not in self._image_by_batch:
                self._image_by_batch[b] = make_session(self._image_path, **self._ort)
            return self._image_by_batch[b], b

    @property
    def gate_has_anchor(self) -> bool:
        return "anchor" in self.experts

    @property
    def _metrics(self) -> Metrics:
        return getattr(self._local, "metrics", None) or self.metrics

    def warm_up(self, max_batch: int) -> int:
        """Run every graph once in the calling thread -- with ``pad_images``, at every padded image batch
        shape up to ``max_batch`` -- so that no request pays a provider's first-run set-up (the CUDA
        provider's per-thread handles, each padded size's cuDNN plans). Not counted in the service's metrics.
        Returns the number of image batch shapes run."""
        shapes = sorted({padded_batch(n) for n in range(1, max_batch + 1)}) if self.pad_images else [1]
        pixels = np.zeros((3, IMAGE_SIZE, IMAGE_SIZE), np.float32)
        self._local.metrics = Metrics()
        try:
            for b in shapes:
                self.infer([Prepared("warm-up", pixels, None)] * b)
        finally:
            del self._local.metrics
        return len(shapes)

    def embed_many(self, items: list[tuple[str | None, bytes | None]]) -> list[Embedded | ImageError]:
        """Several items, each graph run once over the batch; an unusable image fails only its own item."""
        return self.infer([self.prepare(text, image) for text, image in items])

    def prepare(self, text: str | None, image: bytes | None) -> Prepared:
        """Per-item CPU work before the graphs: decode + resize the image (tokenising is batched in ``infer``)."""
        if image is None:
            return Prepared(text, None, None)
        try:
            with self._metrics.time_stage("decode"):
                return Prepared(text, image_to_array(decode_image(image, self.max_pixels)), None)
        except ImageError as exc:
            return Prepared(text, None, exc)

    def infer(self, items: list[Prepared]) -> list[Embedded | ImageError]:
        """The graphs over a batch of prepared items -> an ``Embedded`` per item, or the item's ImageError."""
        n = len(items)
        f = ContentFeatures.zeros(n, self.dims)
        errors = {r: it.error for r, it in enumerate(items) if it.error is not None}
        img_rows = [r for r, it in enumerate(items) if it.pixels is not None]
        if img_rows:
            pixels = np.stack([items[r].pixels for r in img_rows])
            session, b = self._image_session(len(pixels))
            if b > len(pixels):
                pixels = np.concatenate([pixels, np.zeros((b - len(pixels), *pixels.shape[1:]), np.float32)])
            with self._metrics.time_stage("image_encoder"):
                out, st = session.run(None, {IMAGE_INPUTS[0]: pixels})
            f.image[img_rows], f.image_stages[img_rows] = out[: len(img_rows)], st[: len(img_rows)]
            self._metrics.batch_size.labels("image_encoder").observe(len(img_rows))
            f.mask[img_rows, 1] = 1.0
        txt_rows = [r for r, it in enumerate(items) if it.text is not None and r not in errors]
        if txt_rows:
            with self._metrics.time_stage("tokenise"):
                feeds = self.tokenizer([items[r].text for r in txt_rows])
            with self._metrics.time_stage("text_encoder"):
                f.text[txt_rows], f.text_layers[txt_rows] = self.text.run(None, feeds)
            self._metrics.batch_size.labels("text_encoder").observe(len(txt_rows))
            f.mask[txt_rows, 0] = 1.0
        ok = [r for r in range(n) if r not in errors]
        results: list = list(range(n))
        for r, embedded in zip(ok, self.from_features(f.take(ok)) if ok else []):
            results[r] = embedded
        for r, exc in errors.items():
            results[r] = exc
        return results

    def from_features(self, f: ContentFeatures) -> list[Embedded]:
        """The graphs after the encoders (proxy generator, then the experts and the gate when the package has
        them) over a batch of items' content features: what a POST runs after its encoders, and what re-embedding
        a stored item for a new package with the same encoders runs alone."""
        with self._metrics.time_stage("proxy"):
            out, alpha = self.proxy.run(
                None, dict(zip(PROXY_INPUTS, (f.text, f.image, f.text_layers, f.image_stages, f.mask)))
            )
        self._metrics.batch_size.labels("proxy").observe(len(out))
        if self.sampler is None:
            served, weights, diffusion, anchor = out, None, None, None
        else:
            served, weights, diffusion, anchor = self._experts(out, f.text, f.image, f.mask)
        packed = f.pack()
        return [
            Embedded(
                served[j],
                [m for m, k in (("text", 0), ("image", 1)) if f.mask[j, k] > 0],
                alpha[j],
                None if weights is None else weights[j],
                {} if diffusion is None else {"proxy": out[j], "diffusion": diffusion[j], "anchor": anchor[j]},
                packed[j],
            )
            for j in range(len(out))
        ]

    def _experts(self, proxy: np.ndarray, text_f: np.ndarray, image_f: np.ndarray, mask: np.ndarray):
        """anchor -> diffusion proxy -> gated embedding and expert weights (id, proxy, diffusion, anchor)."""
        with self._metrics.time_stage("anchor"):
            anchor = self.anchors.anchors(content_vectors(text_f, image_f, mask)).astype(np.float32)
        with self._metrics.time_stage("sampler"):
            (diffusion,) = self.sampler.run(None, dict(zip(SAMPLER_INPUTS, (anchor, proxy))))
        # a new item: no clicks, no ID
        emb, weights = self.regate(proxy, diffusion, anchor, mask, np.zeros(len(proxy)), None)
        return emb, weights, diffusion, anchor

    def regate(
        self,
        proxy: np.ndarray,
        diffusion: np.ndarray,
        anchor: np.ndarray | None,
        mask: np.ndarray,
        counts: np.ndarray,
        id_emb: np.ndarray | None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """The cold-aware gate graph: features (log1p count, modalities), the ID expert only when given;
        ``anchor`` is fed only to a gate that has that expert."""
        n = len(proxy)
        features = cold_features(counts, mask)
        available = np.ones((n, len(self.experts)), np.float32)
        available[:, 0] = 0.0 if id_emb is None else 1.0
        values = (
            features,
            available,
            np.zeros_like(proxy) if id_emb is None else id_emb.astype(np.float32),
            proxy,
            diffusion,
            anchor,
        )
        with self._metrics.time_stage("gate"):
            return self.gate.run(None, dict(zip(GATE_INPUTS[: 2 + len(self.experts)], values)))


@dataclass
class Embedded:
    embedding: np.ndarray  # what is served: the proxy, or the gate's mix of the experts
    modalities: list[str]
    fusion_weights: np.ndarray  # (text, image)
    expert_weights: np.ndarray | None  # (id, proxy, diffusion, anchor), with a gate
    parts: dict[str, np.ndarray]  # the experts' outputs kept for re-gating ("proxy", "diffusion", "anchor")
    features: np.ndarray | None = None  # the packed content features (``ContentFeatures.pack``), kept for re-embedding


@dataclass
class Prepared:
    text: str | None
    pixels: np.ndarray | None
    error: ImageError | None
