"""The core's small contracts: one error vocabulary (its HTTP statuses the service's), the ID rule, graph names."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

from coldproxy import errors, graph_io
from coldproxy.ids import check_id

INTERNAL = {errors.ColdproxyError, errors.InsecureSettings, errors.ParityError}  # start-up and export failures: 500


def test_errors_are_domain_kinds_without_http_and_the_service_maps_every_one_once():
    from service.api.errors import STATUS

    classes = [c for _, c in inspect.getmembers(errors, inspect.isclass) if issubclass(c, Exception)]
    assert len(classes) >= 15
    for cls in classes:
        assert issubclass(cls, errors.ColdproxyError), cls
        assert not hasattr(cls, "status") and not hasattr(cls, "headers"), cls  # HTTP is the service's business
        assert cls in INTERNAL or any(c in STATUS for c in cls.__mro__), f"{cls.__name__} has no HTTP status"
    assert all(400 <= s < 600 for s in STATUS.values()) and len(set(STATUS.values())) == len(STATUS)


def test_statuses_and_headers_of_the_cases_clients_retry_or_read():
    from service.api.errors import headers_of, status_of

    down = errors.StoreUnavailable("connection refused")
    assert (status_of(down), headers_of(down), down.detail) == (
        503,
        {"Retry-After": "1"},
        "store unavailable; retry shortly",
    )
    assert str(down) == "store unavailable: connection refused"  # the reason, for the log
    assert errors.QueueFull("full").detail == "overloaded: full" and status_of(errors.QueueFull("x")) == 503
    limited = errors.RateLimited("slow down", "3")
    assert (status_of(limited), headers_of(limited)) == (429, {"Retry-After": "3"})
    unknown = errors.UnknownMembers(["a", "b"], "v1")
    assert status_of(unknown) == 422 and unknown.detail["unknown_item_ids"] == ["a", "b"]
    assert isinstance(errors.ImageError("bad"), ValueError) and status_of(errors.PackageError("x")) == 422
    assert status_of(errors.TimedOut("slow")) == 408 and headers_of(errors.NotFound("x")) is None
    assert status_of(errors.ParityError("x")) == 500


@pytest.mark.parametrize("good", ["42", "item-1", "a.b:c_d", "x" * 128])
def test_valid_ids_pass(good):
    assert check_id(good) == good


@pytest.mark.parametrize("bad", ["", "has space", "x" * 129, "slash/", "é"])
def test_invalid_ids_are_a_422_naming_the_field(bad):
    with pytest.raises(errors.InvalidInput) as caught:
        check_id(bad, "bundle_id")
    assert "bundle_id" in caught.value.detail


def test_graph_names_are_distinct_per_graph():
    for inputs, outputs in (
        (graph_io.PROXY_INPUTS, graph_io.PROXY_OUTPUTS),
        (graph_io.GATE_INPUTS, graph_io.GATE_OUTPUTS),
        (graph_io.SAMPLER_INPUTS, graph_io.SAMPLER_OUTPUTS),
        (graph_io.BUNDLE_GATE_INPUTS, graph_io.BUNDLE_GATE_OUTPUTS),
    ):
        assert len(set(inputs)) == len(inputs) and not set(inputs) & set(outputs)


def test_a_large_jpeg_decodes_reduced_and_the_decode_budget_counts_what_is_held():
    """Issue 17: a 12 MP JPEG held 36 MB decoded before it was resized to 224 px; libjpeg's DCT scaling
    (PIL draft) decodes it at 1/8 (500x375), and ``image_cost`` reserves that, from the header alone: 4 bytes a pixel
    as PIL stores RGB, resized before anything is copied (issue 39: a full-size RGB copy doubled the peak).
    A PNG cannot be drafted; an image near 224 px is left as it is (what training saw)."""
    import io

    from PIL import Image

    from coldproxy.preprocess import IMAGE_SIZE, decode_image, image_cost, image_to_array

    rng = np.random.default_rng(0)
    big = Image.fromarray((rng.random((3000, 4000, 3)) * 255).astype("uint8"))
    data = {}
    for fmt in ("JPEG", "PNG"):
        buf = io.BytesIO()
        big.save(buf, fmt)
        data[fmt] = buf.getvalue()
    jpeg = decode_image(data["JPEG"])
    assert jpeg.size == (500, 375) and image_cost(data["JPEG"]) == (500 * 375, 500 * 375 * 4)
    assert min(jpeg.size) >= IMAGE_SIZE and image_to_array(jpeg).shape == (3, IMAGE_SIZE, IMAGE_SIZE)
    assert decode_image(data["PNG"]).size == (4000, 3000) and image_cost(data["PNG"]) == (12_000_000, 48_000_000)
    buf = io.BytesIO()
    Image.fromarray((rng.random((450, 300, 3)) * 255).astype("uint8")).save(buf, "JPEG")
    assert decode_image(buf.getvalue()).size == (300, 450)


def test_features_do_not_depend_on_whether_an_image_is_resized_before_it_is_converted():
    """``image_to_array`` resizes RGB and L images before converting them (no full-size copy): the same pixels as
    converting first, so no model package's features change; a palette or RGBA image is converted first and its
    peak counts the copy."""
    import io

    from PIL import Image

    from coldproxy.preprocess import IMAGE_SIZE, decode_image, image_cost, image_to_array

    def convert_first(img):
        rgb = img.convert("RGB").resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BILINEAR)
        return np.ascontiguousarray(((np.asarray(rgb, dtype=np.float32) - 127.0) / 128.0).transpose(2, 0, 1))

    rng = np.random.default_rng(1)
    for mode, size in (("RGB", (640, 480)), ("L", (500, 700)), ("RGB", (90, 60))):
        img = Image.fromarray(
            rng.integers(0, 256, (size[1], size[0], 3 if mode == "RGB" else 1), np.uint8).squeeze(), mode
        )
        for fmt in ("JPEG", "PNG"):
            buf = io.BytesIO()
            img.save(buf, fmt)
            decoded = decode_image(buf.getvalue())
            assert np.array_equal(image_to_array(decoded), convert_first(decoded)), (mode, size, fmt)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (300, 400), np.uint8), "L").convert("P").save(buf, "PNG")
    assert image_cost(buf.getvalue()) == (120_000, 120_000 * (1 + 4))
