"""Build a model package directory from a training checkpoint: export, parity-check, hash, manifest.

Every graph is checked against torch on real dataset inputs; an export whose max |delta| exceeds
the tolerance is refused, so a package on disk always serves what training measured.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from coldproxy.errors import ParityError
from coldproxy.experts import CONTENT_EXPERTS, EXPERTS, GATE_FEATURES
from coldproxy.graph_io import GATE_INPUTS, PROXY_INPUTS, SAMPLER_INPUTS
from coldproxy.package import (
    COMPONENTS,
    EXPERT_COMPONENTS,
    Dims,
    IdSpace,
    Manifest,
    id_fingerprint,
    load_package,
    replace_dir,
    sha256_file,
    staging_dir,
    write_manifest,
)
from coldproxy.preprocess import load_image_file, preprocessing_manifest
from export.encoders import export_image_encoder, export_text_encoder
from export.graphs import export_gate, export_proxy, export_sampler, parity
from models.data import load_dataset
from models.diffusion import NoiseSchedule
from models.encoders import (
    IMAGE_DIM,
    IMAGE_ENCODER,
    IMAGE_STAGE_DIM,
    TEXT_DIM,
    TEXT_ENCODER,
    TEXT_LAYERS,
    ImageEncoder,
    TextEncoder,
    text_model_dir,
    tokenizer,
)
from models.items.blend import describe
from models.items.calibration import CalibratedGate, CalibratedProxy, Calibration, UnitLength
from models.items.checkpoint import load_experts, load_proxy, served_checkpoint
from models.items.generator import BlendedGenerator, RoutedGenerator
from models.items.refit import evaluation_record
from models.items.text_finetune import LAYER_FILE, apply_text_layer
from models.samplers import UnrolledSampler, make_plan


def parity_inputs(settings, count: int) -> tuple[dict, dict]:
    """Real inputs: the first ``n`` items with a poster, their texts, and their features."""
    ds = load_dataset(settings)
    idx = [i for i, p in enumerate(ds.item_images) if p is not None][:count]
    text = tokenizer(settings.text_max_len)([ds.item_texts[i] for i in idx])
    pixels = {"pixels": np.stack([load_image_file(ds.item_images[i]) for i in idx])}
    return text, pixels


def build_package(settings, checkpoint: Path | None = None) -> Path:
    """The package of ``checkpoint`` (default: the settings' served one -- the refit on all the data when there is
    one, else the evaluation's: ``models.items.checkpoint.served_checkpoint``) into ``settings.package_dir``."""
    out = Path(settings.package_dir)
    work = Path(checkpoint) if checkpoint is not None else served_checkpoint(settings.work_dir)
    if not (work / "proxy.pt").exists():
        raise FileNotFoundError(f"no checkpoint in {work}; run `coldproxy train` first")
    stage = staging_dir(out)
    text_enc, image_enc, proxy = apply_text_layer(TextEncoder(), work), ImageEncoder(), load_proxy(work)
    calibration = Calibration.load(work)
    metrics = json.loads((work / "metrics.json").read_text())
    cosine = metrics.get("id_space", {}).get("score") == "cosine"
    serving = proxy.serving()
    if not (work / "experts.pt").exists():  # with a gate, the gate graph calibrates and is made unit-length
        serving = serving if calibration is None else CalibratedProxy(serving, calibration)
        serving = UnitLength(serving) if cosine else serving
    export_text_encoder(text_enc, stage / COMPONENTS["text_encoder"])
    export_image_encoder(image_enc, stage / COMPONENTS["image_encoder"])
    export_proxy(proxy, stage / COMPONENTS["proxy"], serving)
    shutil.copy(text_model_dir() / "tokenizer.json", stage / COMPONENTS["tokenizer"])
    shutil.copy(work / "embeddings.npz", stage / COMPONENTS["embeddings"])

    text_feeds, pixel_feeds = parity_inputs(settings, settings.parity_items)
    z = np.load(stage / COMPONENTS["embeddings"])
    real = np.load(work / "parity_inputs.npz")
    proxy_feeds = {name: real[name] for name in PROXY_INPUTS}
    report = {
        "text_encoder": parity(text_enc, stage / COMPONENTS["text_encoder"], text_feeds),
        "image_encoder": parity(image_enc, stage / COMPONENTS["image_encoder"], pixel_feeds),
        "proxy": parity(serving, stage / COMPONENTS["proxy"], proxy_feeds),
    }
    for name, keep in (("proxy_text_only", [1, 0]), ("proxy_image_only", [0, 1])):
        feeds = {**proxy_feeds, "modality_mask": proxy_feeds["modality_mask"] * np.array(keep, np.float32)}
        report[name] = parity(serving, stage / COMPONENTS["proxy"], feeds)
    experts = _export_experts(work, stage, proxy.out_dim, report, calibration, cosine)
    bad = {k: v for k, v in report.items() if not v < settings.parity_tolerance}
    if bad:
        raise ParityError(f"ONNX vs torch max |delta| over {settings.parity_tolerance}: {bad}")

    metrics_keys = (
        "test",
        "test_protocol",
        "test_uncalibrated",
        "id_space",
        "calibration",
        "id_model",
        "text_finetune",
        "proxy",
        "selection",
        "split",
        "refit",
    ) + (("diffusion", "gate") if experts else ())
    files = {c: sha256_file(stage / n) for c, n in (COMPONENTS | (EXPERT_COMPONENTS if experts else {})).items()}
    now = datetime.now(timezone.utc)
    space = id_space(metrics, z, proxy.out_dim)
    manifest = Manifest(
        version=package_version(files, now),
        created_at=now.isoformat(),
        dims=Dims(
            id_dim=proxy.out_dim,
            text_dim=TEXT_DIM,
            image_dim=IMAGE_DIM,
            text_layers=TEXT_LAYERS,
            image_stage_dim=IMAGE_STAGE_DIM,
        ),
        encoders={
            "text": TEXT_ENCODER + (" (last layer fine-tuned)" if (work / LAYER_FILE).exists() else ""),
            "image": IMAGE_ENCODER,
            "proxy": generator_name(proxy),
            "id_model": id_model_name(metrics),
        },
        preprocessing=preprocessing_manifest(settings.text_max_len),
        files=files,
        parity=report,
        metrics={k: metrics[k] for k in metrics_keys if k in metrics},
        provenance=metrics["dataset"],
        counts={
            "users": int(len(z["user_ids"])),
            "warm_items": int(len(z["item_ids"])),
            "proxy_items": int(len(z["proxy_item_ids"])) if "proxy_item_ids" in z.files else 0,
        },
        evaluation=metrics.get("evaluation") or evaluation_record(metrics),
        served=metrics.get("served"),
        experts=experts,
        id_fingerprint=space.fingerprint,
        id_space=space,
    )
    write_manifest(stage, manifest)
    load_package(stage)  # the service's own check, before the package replaces the old one
    return replace_dir(stage, out)


def id_space(metrics: dict, tables, dim: int) -> IdSpace:
    """The manifest's ID space: the given one as training recorded it, or the trained one, fingerprinted by its
    tables (``coldproxy.package.id_fingerprint``; packages from before issue 38 record no ``id_space``)."""
    record = {k: v for k, v in metrics.get("id_space", {}).items() if k in IdSpace.model_fields}
    if record.get("source") == "given":
        return IdSpace(**record)
    fingerprint = id_fingerprint(
        [str(x) for x in tables["user_ids"]],
        tables["user_emb"],
        [str(x) for x in tables["item_ids"]],
        tables["item_emb"],
    )
    return IdSpace(
        fingerprint=fingerprint,
        source="trained",
        score="dot",
        dim=dim,
        item_vectors=int(len(tables["item_ids"])),
        user_vectors=int(len(tables["user_ids"])),
    )


def id_model_name(metrics: dict) -> str:
    """The ID model in words: the trained one's type, or where the given space came from."""
    space = metrics.get("id_space", {})
    if space.get("source") != "given":
        return metrics["id_model"]["type"]
    users = f" + users {space['user_file']}" if space.get("user_file") else " (items only)"
    return f"given: items {space['item_file']}{users}, {space['score']} score"


def generator_name(proxy) -> str:
    """The served generator in words: "moe-fusion-coarse[-fine]", or "<modality>-only ... (fused where absent)"."""
    name = "moe-fusion-coarse-fine" if proxy.cfg.fine else "moe-fusion-coarse"
    if isinstance(proxy, RoutedGenerator):
        return f"{('text', 'image')[proxy.modality]}-only {name} (the fused generator where that modality is absent)"
    if isinstance(proxy, BlendedGenerator):
        parts = {"both": "fused", "text": "text-only", "image": "image-only"}

        def words(member: str) -> str:  # "text#2" -> "text-only #2"
            base, _, seed = member.partition("#")
            return parts.get(base, base) + (f" #{seed}" if seed else "")

        return f"{name}, blend of " + describe({words(m): w for m, w in proxy.weights.items()})
    return name


def package_version(files: dict[str, str], now: datetime) -> str:
    """``YYYYMMDD-<12 hex>``: the date and a digest of the component hashes."""
    digest = hashlib.sha256("".join(files[c] for c in sorted(files)).encode()).hexdigest()[:12]
    return f"{now:%Y%m%d}-{digest}"


def _export_experts(
    work: Path, stage: Path, dim: int, report: dict, calibration: Calibration | None, cosine: bool = False
) -> dict | None:
    """Sampler (DPM-Solver++ steps unrolled) and gate graphs, parity-checked into ``report``; the gate
    calibrates its content experts when a calibration was fitted, and serves unit vectors in a cosine space."""
    loaded = load_experts(work)
    if loaded is None:
        return None
    den, gate, kw, anchor_n = loaded
    served = gate.choice
    if calibration is not None:
        gate = CalibratedGate(gate, calibration).eval()
    if cosine:
        gate = UnitLength(gate).eval()
    if kw["method"] == "ddpm":
        raise ValueError("the ancestral DDPM sampler is stochastic; export a DPM-Solver++ sampler")
    sampler = UnrolledSampler(
        den,
        make_plan(NoiseSchedule(den.cfg.schedule, den.cfg.T), kw["method"], kw["steps"], kw["t_start"], kw["spacing"]),
    )
    export_sampler(sampler, stage / EXPERT_COMPONENTS["sampler"])
    export_gate(gate, dim, stage / EXPERT_COMPONENTS["gate"])
    real = np.load(work / "parity_experts.npz")
    report["sampler"] = parity(sampler, stage / EXPERT_COMPONENTS["sampler"], {k: real[k] for k in SAMPLER_INPUTS})
    gate_feeds = {k: real[k] for k in GATE_INPUTS}
    report["gate"] = parity(gate, stage / EXPERT_COMPONENTS["gate"], gate_feeds)
    cold = gate_feeds | {
        "expert_available": gate_feeds["expert_available"] * np.array([0] + [1] * len(CONTENT_EXPERTS), np.float32)
    }
    report["gate_without_id"] = parity(gate, stage / EXPERT_COMPONENTS["gate"], cold)
    return {
        "sampler": kw,
        "denoiser": den.cfg.to_dict(),
        "anchor_n": anchor_n,
        "experts": list(EXPERTS),
        "served": served,
        "gate_features": list(GATE_FEATURES),
        "calibration": None if calibration is None else {"scale": calibration.scale, "shift": calibration.shift},
    }
