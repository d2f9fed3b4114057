"""ONNX graphs match torch on real inputs; the model package is verified on load."""

import json
import shutil

import numpy as np
import pytest

from coldproxy.errors import PackageError
from coldproxy.ort import make_session
from coldproxy.package import load_package
from coldproxy.preprocess import load_image_file
from export.graphs import parity
from models.encoders import ImageEncoder, TextEncoder, tokenizer
from models.items.checkpoint import load_proxy
from models.items.train import check_selection

TOL = 1e-4


def test_manifest_records_parity_and_dims(package_dir, train_settings):
    b = load_package(package_dir)
    m = b.manifest
    assert m.dims.id_dim == train_settings.dim and m.dims.text_dim == 384 and m.dims.image_dim == 1280
    assert m.dims.text_layers == 7 and m.dims.image_stage_dim == 784
    assert set(m.parity) == {
        "text_encoder",
        "image_encoder",
        "proxy",
        "proxy_text_only",
        "proxy_image_only",
        "sampler",
        "gate",
        "gate_without_id",
    }
    assert all(v < TOL for v in m.parity.values())
    assert (
        m.experts["experts"] == ["id", "proxy", "diffusion", "anchor"] and m.experts["sampler"]["method"] == "dpmpp2m"
    )
    selection = m.metrics["selection"]  # what new items are served, chosen on validation, with every candidate's score
    assert m.experts["served"] == selection["served"] in ("gate", "proxy", "diffusion", "anchor")
    check_selection(selection)  # the validation-best, or the simpler one where the floor turned a gain down
    assert set(selection["margins"]) == {"anchor", "diffusion", "gate"}  # each costlier candidate's margin
    assert {m["against"] for m in selection["margins"].values()} == {"proxy"}  # over the simplest, not chained
    assert all(m["floor"] > 0 and m["adopt"] == (m["mean_gain"] > m["floor"]) for m in selection["margins"].values())
    assert {"gate", "proxy", "diffusion", "anchor", "generator:both"} <= set(selection["validation"])
    assert m.experts["sampler"] == selection["sampler"]  # the sampler the package unrolls is the one training used
    assert {"sampler", "gate"} <= set(m.files) and b.has_experts
    assert b.user_emb.shape[1] == train_settings.dim and len(b.item_ids) == len(b.item_emb)
    assert "ratings_sha256" in m.provenance and "cold" in m.metrics["test"]


def test_text_and_image_graphs_match_torch(package_dir, trained):
    ds = trained.dataset
    idx = [i for i, p in enumerate(ds.item_images) if p is not None][20:28]
    feeds = tokenizer(128)([ds.item_texts[i] for i in idx])
    assert parity(TextEncoder(), package_dir / "text_encoder.onnx", feeds) < TOL
    pixels = np.stack([load_image_file(ds.item_images[i]) for i in idx])
    assert parity(ImageEncoder(), package_dir / "image_encoder.onnx", {"pixels": pixels}) < TOL


@pytest.mark.parametrize("mask", [(1, 1), (1, 0), (0, 1)])
def test_proxy_graph_matches_torch_with_missing_modalities(package_dir, trained, train_settings, mask):
    """The whole generator (adapters, fusion, coarse + fine, residual gate) is one graph; outputs proxy and α."""
    f = trained.features.rows(trained.split.test_items[:16])
    feeds = {
        "text_features": f.text,
        "image_features": f.image,
        "text_layers": f.text_layers,
        "image_stages": f.image_stages,
        "modality_mask": (f.mask * np.array(mask, np.float32)).astype(np.float32),
    }
    gen = load_proxy(train_settings.work_dir)
    assert parity(gen.serving(), package_dir / "proxy.onnx", feeds) < TOL
    alpha = make_session(package_dir / "proxy.onnx").run(["fusion_weights"], feeds)[0]
    np.testing.assert_allclose(alpha.sum(1), feeds["modality_mask"].max(1), atol=1e-6)
    assert (alpha[feeds["modality_mask"] == 0] == 0).all()


def test_package_with_tampered_file_is_refused(package_dir, tmp_path):
    bad = tmp_path / "package"
    shutil.copytree(package_dir, bad)
    with open(bad / "proxy.onnx", "ab") as f:
        f.write(b"\0")
    with pytest.raises(PackageError, match="sha256"):
        load_package(bad)


def test_package_with_wrong_dims_is_refused(package_dir, tmp_path):
    bad = tmp_path / "package"
    shutil.copytree(package_dir, bad)
    m = json.loads((bad / "manifest.json").read_text())
    m["dims"]["id_dim"] = 32
    (bad / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(PackageError, match="dims"):
        load_package(bad)


def test_sampler_graph_matches_torch_on_cold_items(package_dir, trained, train_settings):
    """The unrolled DPM-Solver++ graph vs the torch sampler, on test-cold items' anchors and proxies."""
    from models.items.checkpoint import load_experts
    from models.samplers import sample

    den, _, kw, _ = load_experts(train_settings.work_dir)
    cold = trained.split.test_items[:16]
    anchor, cond = trained.experts.anchor[cold], trained.experts.proxy[cold]
    got = make_session(package_dir / "sampler.onnx").run(None, {"anchor": anchor, "condition": cond})[0]
    np.testing.assert_allclose(got, sample(den, anchor, cond, **kw), atol=TOL)
    np.testing.assert_allclose(got, trained.experts.diffusion[cold], atol=TOL)  # what training scored


def test_int8_bundle_is_a_new_verified_bundle_that_serves_close_to_float32(
    package_dir, trained, train_settings, tmp_path
):
    from export.quantize import quantize_package
    from service.engine.pipeline import ProxyPipeline
    from service.metrics import Metrics

    b = load_package(package_dir)
    bq = load_package(quantize_package(package_dir, tmp_path / "int8", train_settings))
    assert bq.manifest.version != b.manifest.version and "int8" in bq.manifest.encoders["quantization"]
    assert bq.file("text_encoder").stat().st_size < 0.5 * b.file("text_encoder").stat().st_size
    assert bq.manifest.files["image_encoder"] == b.manifest.files["image_encoder"]  # text only by default
    assert 0 < bq.manifest.parity["text_encoder_int8"] < 1.0
    ds = trained.dataset
    items = [
        (ds.item_texts[i], ds.item_images[i].read_bytes() if ds.item_images[i] else None)
        for i in trained.split.test_items[:16]
    ]
    ort = {"providers": ["CPUExecutionProvider"]}
    out = ProxyPipeline(b, Metrics(), ort, 40_000_000).embed_many(items)
    outq = ProxyPipeline(bq, Metrics(), ort, 40_000_000).embed_many(items)
    assert not np.allclose(np.stack([r.embedding for r in out]), np.stack([r.embedding for r in outq]))
    # int8 moves every content proxy (the quality change on the cold split is bench/quantize.py's job); the
    # served mix moves more where the similarity anchor's neighbours change, so the proxies are compared. A
    # text-only generator chosen on validation feels the int8 text encoder fully (no image to dampen it):
    # cosines 0.42-0.97 on this small fixture, against 0.61-0.99 for the fused generator before.
    e, eq = (np.stack([r.parts["proxy"] for r in rs]) for rs in (out, outq))
    cos = (e * eq).sum(1) / np.linalg.norm(e, axis=1) / np.linalg.norm(eq, axis=1)
    assert cos.mean() > 0.8 and cos.min() > 0.3, cos


def test_padded_image_batches_serve_the_same_vectors(package_dir, trained):
    """The CUDA layout (power-of-two image batches, zero rows dropped) changes no vector, and warm-up
    runs each padded shape once."""
    from prometheus_client import generate_latest

    from service.engine.pipeline import ProxyPipeline, padded_batch
    from service.metrics import Metrics

    assert [padded_batch(n) for n in (1, 2, 3, 5, 8, 9, 32, 33)] == [1, 2, 4, 8, 8, 16, 32, 64]
    b, ds = load_package(package_dir), trained.dataset
    rows = [i for i in trained.split.test_items if ds.item_images[i]][:5]
    items = [(ds.item_texts[i], ds.item_images[i].read_bytes()) for i in rows] + [(ds.item_texts[rows[0]], None)]
    ort = {"providers": ["CPUExecutionProvider"]}
    plain = ProxyPipeline(b, Metrics(), ort, 40_000_000, pad_images=False)
    metrics = Metrics()
    padded = ProxyPipeline(b, metrics, ort, 40_000_000, pad_images=True)
    # auto: CPU -> no padding
    assert not plain.pad_images and not ProxyPipeline(b, Metrics(), ort, 40_000_000).pad_images
    got = padded.embed_many(items)
    np.testing.assert_allclose(
        np.stack([r.embedding for r in got]), np.stack([r.embedding for r in plain.embed_many(items)]), atol=1e-5
    )
    assert got[-1].modalities == ["text"]
    assert padded.warm_up(32) == 6 and plain.warm_up(32) == 1
    # one shape each
    assert sorted(padded._image_by_batch) == [1, 2, 4, 8, 16, 32] and list(plain._image_by_batch) == [1]
    assert 'stage="image_encoder"} 1.0' in generate_latest(metrics.registry).decode()  # warm-up is not counted
