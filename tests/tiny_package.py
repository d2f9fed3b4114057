"""A tiny synthetic model package, built in a couple of seconds without training or data: random
small text and image encoders and a random proxy generator, exported through the same export code
(``export.encoders``, ``export.graphs``) with the real graph I/O names and the real tokenizer. It is
what the fast tier's HTTP tests serve; the slow tier serves a trained package of real encoders."""

from __future__ import annotations

import hashlib
import shutil
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from coldproxy.package import COMPONENTS, Dims, Manifest, load_package, sha256_file, write_manifest
from coldproxy.preprocess import preprocessing_manifest
from export.encoders import export_image_encoder, export_text_encoder
from export.graphs import export_proxy
from models.encoders import text_model_dir
from models.items.generator import GeneratorConfig, ProxyGenerator

TEXT_DIM, TEXT_LAYERS, IMAGE_DIM, STAGE_DIM, ID_DIM = 16, 3, 24, 12, 8
VOCAB = 30522  # the MiniLM tokenizer's
USERS, WARM_ITEMS = 20, 30


class TinyText(nn.Module):
    """Token embeddings, two tanh layers, mean-pooled per layer: (text_features, text_layers)."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(VOCAB, TEXT_DIM)
        self.layers = nn.ModuleList(nn.Linear(TEXT_DIM, TEXT_DIM) for _ in range(TEXT_LAYERS - 1))

    def forward(self, input_ids, attention_mask):
        weight = attention_mask.unsqueeze(-1).float()
        hidden, pooled = self.embed(input_ids), []
        for layer in [None, *self.layers]:
            hidden = hidden if layer is None else torch.tanh(layer(hidden))
            pooled.append((hidden * weight).sum(1) / weight.sum(1).clamp_min(1.0))
        return pooled[-1], torch.stack(pooled, 1)


class TinyImage(nn.Module):
    """4x4 average pooling and two linear heads: (image_features, image_stages)."""

    def __init__(self):
        super().__init__()
        self.features, self.stages = nn.Linear(48, IMAGE_DIM), nn.Linear(48, STAGE_DIM)

    def forward(self, pixels):
        pooled = F.adaptive_avg_pool2d(pixels, 4).flatten(1)
        return self.features(pooled), self.stages(pooled)


def build_tiny_package(out: Path, seed: int = 0) -> Path:
    """Write the package into ``out`` and check it loads as the service loads it."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    export_text_encoder(TinyText(), out / COMPONENTS["text_encoder"])
    export_image_encoder(TinyImage(), out / COMPONENTS["image_encoder"])
    generator = ProxyGenerator(
        GeneratorConfig(
            text_dim=TEXT_DIM,
            image_dim=IMAGE_DIM,
            n_text_layers=TEXT_LAYERS,
            image_stage_dim=STAGE_DIM,
            out_dim=ID_DIM,
            hidden=16,
            experts=2,
            dropout=0.0,
        )
    ).eval()
    export_proxy(generator, out / COMPONENTS["proxy"])
    shutil.copy(text_model_dir() / "tokenizer.json", out / COMPONENTS["tokenizer"])
    np.savez(
        out / COMPONENTS["embeddings"],
        user_ids=np.array([str(u) for u in range(USERS)]),
        user_emb=rng.standard_normal((USERS, ID_DIM)).astype(np.float32),
        item_ids=np.array([f"warm-{i}" for i in range(WARM_ITEMS)]),
        item_emb=rng.standard_normal((WARM_ITEMS, ID_DIM)).astype(np.float32),
        # user u's training interactions: warm items u, u + 1, ..., u + 4 (mod 30)
        seen_indptr=np.arange(0, 5 * USERS + 1, 5),
        seen_items=np.array([(u + j) % WARM_ITEMS for u in range(USERS) for j in range(5)]),
    )
    files = {name: sha256_file(out / file) for name, file in COMPONENTS.items()}
    digest = hashlib.sha256("".join(files[c] for c in sorted(files)).encode()).hexdigest()[:12]
    write_manifest(
        out,
        Manifest(
            version=f"tiny-{digest}",
            created_at=datetime.now(timezone.utc).isoformat(),
            dims=Dims(
                id_dim=ID_DIM,
                text_dim=TEXT_DIM,
                image_dim=IMAGE_DIM,
                text_layers=TEXT_LAYERS,
                image_stage_dim=STAGE_DIM,
            ),
            encoders={
                "text": "tiny-text",
                "image": "tiny-image",
                "proxy": "moe-fusion-coarse-fine",
                "id_model": "random",
            },
            preprocessing=preprocessing_manifest(32),
            files=files,
            parity={},
            metrics={},
            provenance={"name": "synthetic"},
            counts={"users": USERS, "warm_items": WARM_ITEMS},
        ),
    )
    load_package(out)
    return out


def retrain_tiny_package(src: Path, out: Path, seed: int, new_space: bool = True) -> Path:
    """A package as a retrain of the recommender would give: ``src``'s encoders, a new proxy generator and new
    ID tables (another ID space), another version; without ``new_space`` the ID tables stay (a new proxy model
    trained against the same recommender)."""
    src, out = Path(src), Path(out)
    shutil.copytree(src, out)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    generator = ProxyGenerator(
        GeneratorConfig(
            text_dim=TEXT_DIM,
            image_dim=IMAGE_DIM,
            n_text_layers=TEXT_LAYERS,
            image_stage_dim=STAGE_DIM,
            out_dim=ID_DIM,
            hidden=16,
            experts=2,
            dropout=0.0,
        )
    ).eval()
    export_proxy(generator, out / COMPONENTS["proxy"])
    z = dict(np.load(src / COMPONENTS["embeddings"]))
    if new_space:
        z["user_emb"] = rng.standard_normal(z["user_emb"].shape).astype(np.float32)
        z["item_emb"] = rng.standard_normal(z["item_emb"].shape).astype(np.float32)
    np.savez(out / COMPONENTS["embeddings"], **z)
    manifest = Manifest.model_validate_json((src / "manifest.json").read_text())
    files = {name: sha256_file(out / file) for name, file in COMPONENTS.items()}
    digest = hashlib.sha256("".join(files[c] for c in sorted(files)).encode()).hexdigest()[:12]
    write_manifest(out, manifest.model_copy(update={"version": f"tiny-{digest}", "files": files}))
    load_package(out)
    return out
