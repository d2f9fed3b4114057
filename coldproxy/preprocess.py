"""Input preprocessing shared by training and serving (numpy + PIL + tokenizers, no torch).

Training extracts features with exactly these functions and the service feeds the ONNX graphs
with them, so the two can never drift apart. The constants are written into the model package's manifest.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image

from coldproxy.errors import ImageError
from coldproxy.graph_io import TEXT_INPUTS

IMAGE_SIZE = 224
PIXEL_MEAN = 127.0
PIXEL_SCALE = 128.0
IMAGE_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP")


def draft_scale(img: Image.Image) -> int:
    """How much a JPEG is reduced while decoding (1, 2, 4 or 8: libjpeg's DCT scaling): the most that
    keeps both sides at least ``IMAGE_SIZE``, since the image is resized to that anyway. Other formats: 1."""
    if img.format != "JPEG":
        return 1
    scale = 1
    while scale < 8 and min(img.width, img.height) // (2 * scale) >= IMAGE_SIZE:
        scale *= 2
    return scale


STORED_BYTES = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16L": 2, "I;16B": 2}  # PIL's bytes per pixel; 4 for the rest
RESIZED_FIRST = ("RGB", "L")  # modes ``image_to_array`` resizes before converting (no full-size RGB copy)


def image_cost(data: bytes) -> tuple[int, int]:
    """(pixels, peak bytes) of ``decode_image`` + ``image_to_array`` for this image, from its header alone: the decoded
    image as PIL stores it (4 bytes a pixel for RGB, 1 for L and palettes), plus, for modes converted before they are
    resized, the full-size RGB copy (4 bytes a pixel). (0, 0) when the header cannot be read."""
    try:
        with Image.open(io.BytesIO(data), formats=IMAGE_FORMATS) as img:
            s = draft_scale(img)
            pixels = -(-int(img.width) // s) * -(-int(img.height) // s)
            per_pixel = STORED_BYTES.get(img.mode, 4) + (0 if img.mode in RESIZED_FIRST else 4)
            return pixels, pixels * per_pixel
    except Exception:
        return 0, 0


def decode_image(data: bytes, max_pixels: int = 40_000_000) -> Image.Image:
    """Decode and fully load an image, refusing unknown formats and decompression bombs; a JPEG much
    larger than ``IMAGE_SIZE`` is decoded reduced (``draft_scale``)."""
    if not data:
        raise ImageError("image is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data), formats=IMAGE_FORMATS)
            if img.width * img.height > max_pixels:
                raise ImageError(f"image has {img.width}x{img.height} pixels, limit is {max_pixels}")
            if (scale := draft_scale(img)) > 1:  # decode a large JPEG at 1/2..1/8 size: a fraction of the memory
                img.draft(img.mode, (-(-img.width // scale), -(-img.height // scale)))
            img.load()
    except ImageError:
        raise
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
        raise ImageError(f"image too large: {exc}") from exc
    except Exception as exc:  # PIL raises many types for corrupt input
        raise ImageError(f"cannot decode image: {exc.__class__.__name__}: {exc}") from exc
    return img


def image_to_array(img: Image.Image) -> np.ndarray:
    """RGB, resized to 224x224 (bilinear), scaled (x - 127) / 128, channels first: float32 [3, 224, 224]."""
    size = (IMAGE_SIZE, IMAGE_SIZE)
    if img.mode in RESIZED_FIRST:  # the same pixels as converting first (per-channel bilinear), without a full copy
        rgb = img.resize(size, Image.Resampling.BILINEAR).convert("RGB")
    else:
        rgb = img.convert("RGB").resize(size, Image.Resampling.BILINEAR)
    arr = (np.asarray(rgb, dtype=np.float32) - PIXEL_MEAN) / PIXEL_SCALE
    return np.ascontiguousarray(arr.transpose(2, 0, 1))


def load_image_file(path: Path, max_pixels: int = 40_000_000) -> np.ndarray:
    return image_to_array(decode_image(Path(path).read_bytes(), max_pixels))


class TextTokenizer:
    """WordPiece tokenizer from a ``tokenizer.json``; truncates to ``max_len`` tokens and pads per batch."""

    def __init__(self, tokenizer_file: Path, max_len: int = 128):
        from tokenizers import Tokenizer

        self.max_len = max_len
        self._tok = Tokenizer.from_file(str(tokenizer_file))
        self._tok.enable_truncation(max_length=max_len)
        self._tok.enable_padding(pad_id=self._tok.token_to_id("[PAD]") or 0, pad_token="[PAD]")

    def __call__(self, texts: list[str]) -> dict[str, np.ndarray]:
        enc = self._tok.encode_batch(texts)
        ids, mask = TEXT_INPUTS
        return {
            ids: np.array([e.ids for e in enc], dtype=np.int64),
            mask: np.array([e.attention_mask for e in enc], dtype=np.int64),
        }


def preprocessing_manifest(text_max_len: int) -> dict:
    """The constants the manifest records, so a model package states how its inputs were prepared."""
    return {
        "image_size": IMAGE_SIZE,
        "pixel_mean": PIXEL_MEAN,
        "pixel_scale": PIXEL_SCALE,
        "image_resize": "bilinear, no crop",
        "image_formats": list(IMAGE_FORMATS),
        "text_max_len": text_max_len,
        "text_pooling": "mean over attention mask, l2-normalised",
    }
