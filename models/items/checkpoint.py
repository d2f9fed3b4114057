"""The training checkpoint: what ``coldproxy export`` reads, in one directory -- the generator's weights and config,
the experts, the calibration, the ID tables with the package's proxies for every other catalogue item and every user's
interactions, a few real inputs for the parity checks, and ``metrics.json``.

An evaluation's checkpoint is ``work_dir``; the refit on all the data made from it (``models.items.refit``) is
``work_dir/refit``, and it is what ``export`` packages once it is there (``served_checkpoint``). A new evaluation
replaces the whole directory, so a refit of an earlier one never survives it. Each checkpoint is written beside its
place and moved there whole: an interrupted write leaves the previous one as it was.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from coldproxy.package import replace_dir, seen_table, staging_dir
from models.diffusion import Denoiser, DenoiserConfig
from models.gate import ColdAwareGate
from models.items.experts import ServedGate
from models.items.generator import BlendedGenerator, GeneratorConfig, ProxyGenerator, RoutedGenerator
from models.items.result import TrainResult
from models.items.text_finetune import LAYER_FILE

REFIT_DIR = "refit"
METRICS = "metrics.json"


def read_metrics(work_dir: Path) -> dict | None:
    """A checkpoint's ``metrics.json``, or None when there is none."""
    path = Path(work_dir) / METRICS
    return json.loads(path.read_text()) if path.exists() else None


def refit_dir(work_dir: Path) -> Path:
    return Path(work_dir) / REFIT_DIR


def has_refit(work_dir: Path) -> bool:
    """Whether ``work_dir`` holds a refit made from the evaluation checkpoint it holds."""
    evaluation, refit = read_metrics(work_dir), read_metrics(refit_dir(work_dir))
    return (
        evaluation is not None
        and refit is not None
        and refit.get("evaluation", {}).get("run_id") == evaluation.get("run_id")
    )


def served_checkpoint(work_dir: Path) -> Path:
    """The checkpoint a package is made from: the refit on all the data when there is one, else the evaluation's."""
    return refit_dir(work_dir) if has_refit(work_dir) else Path(work_dir)


def save_checkpoint(result: TrainResult, work_dir: Path) -> Path:
    """Write ``result`` as the checkpoint in ``work_dir`` (replacing what was there, refit included, only once the
    whole of it is written)."""
    final = Path(work_dir)
    work_dir = staging_dir(final)
    torch.save(generator_checkpoint(result.proxy), work_dir / "proxy.pt")
    if result.calibration is not None:
        result.calibration.save(work_dir)
    if result.text_layer is not None:
        torch.save(result.text_layer, work_dir / LAYER_FILE)
    warm = result.split.warm_items
    f = result.features
    user_ids, user_emb, served, served_emb = result.package_tables()
    proxy_rows, proxy_emb = result.package_proxies()
    # every interaction the data holds, as rows of the package's items (ID-served first, then proxy-served)
    seen_indptr, seen_items = seen_table(
        len(user_ids), result.dataset.n_items, np.concatenate([served, proxy_rows]), result.dataset.seen()
    )
    np.savez(
        work_dir / "embeddings.npz",
        user_ids=np.array(user_ids, dtype=str),
        user_emb=user_emb.astype(np.float32),
        item_ids=np.array([result.dataset.item_ids[i] for i in served], dtype=str),
        item_emb=served_emb.astype(np.float32),
        item_text=f.text[served],
        item_image=f.image[served],
        item_mask=f.mask[served],
        seen_indptr=seen_indptr,
        seen_items=seen_items,
        proxy_item_ids=np.array([result.dataset.item_ids[i] for i in proxy_rows], dtype=str),
        proxy_item_emb=proxy_emb.astype(np.float32),
    )
    k = warm[: result.settings.parity_items]
    np.savez(
        work_dir / "parity_inputs.npz",
        text_features=f.text[k],
        image_features=f.image[k],
        text_layers=f.text_layers[k],
        image_stages=f.image_stages[k],
        modality_mask=f.mask[k],
    )
    if result.experts is not None:
        ex, s = result.experts, result.settings
        torch.save(
            {
                "denoiser": ex.denoiser.state_dict(),
                "denoiser_config": ex.denoiser.cfg.to_dict(),
                "gate": ex.gate.state_dict(),
                "sampler": ex.sampler,
                "anchor_n": s.anchor_n,
                "served": ex.choice,
            },
            work_dir / "experts.pt",
        )
        stacked, available = ex.stacked(result.item_emb, warm, result.dataset.n_items)
        np.savez(
            work_dir / "parity_experts.npz",
            anchor=ex.anchor[k],
            condition=ex.proxy[k],
            gate_features=ex.features[k],
            expert_available=available[k],
            id_embedding=stacked[k, 0],
            proxy=stacked[k, 1],
            diffusion=stacked[k, 2],
        )
    (work_dir / METRICS).write_text(json.dumps(result.metrics, indent=2, default=float))
    return replace_dir(work_dir, final)


def load_experts(work_dir: Path):
    """(denoiser, served gate, sampler kwargs, anchor_n) from ``experts.pt``, or None when not trained."""
    path = Path(work_dir) / "experts.pt"
    if not path.exists():
        return None
    ck = torch.load(path, weights_only=True)
    den = Denoiser(DenoiserConfig(**ck["denoiser_config"]))
    den.load_state_dict(ck["denoiser"])
    gate = ColdAwareGate()
    gate.load_state_dict(ck["gate"])
    return den.eval(), ServedGate(gate.eval(), ck.get("served", "gate")).eval(), ck["sampler"], ck["anchor_n"]


def generator_checkpoint(model: nn.Module) -> dict:
    """A generator's weights and config; a routed one's with its fused generator under "fused"; a blend's
    fused generator's with the single-modality ones and the weights under "blend"."""
    if isinstance(model, RoutedGenerator):
        return generator_checkpoint(model.single) | {"fused": generator_checkpoint(model.fused)}
    if isinstance(model, BlendedGenerator):
        singles = {n: generator_checkpoint(g) for n, g in zip(model.names, model.singles)}
        return generator_checkpoint(model.fused) | {"blend": {"weights": model.weights, "singles": singles}}
    return {"state_dict": model.state_dict(), "config": model.cfg.to_dict()}


def load_proxy(work_dir: Path, ck: dict | None = None) -> nn.Module:
    """The served generator of a checkpoint: a ``ProxyGenerator``, ``RoutedGenerator`` or ``BlendedGenerator``."""
    ck = torch.load(Path(work_dir) / "proxy.pt", weights_only=True) if ck is None else ck
    c = ck["config"]
    model = ProxyGenerator(GeneratorConfig(**(c | {"modalities": tuple(c["modalities"])})))
    model.load_state_dict(ck["state_dict"])
    if "fused" in ck:
        return RoutedGenerator(model.eval(), load_proxy(work_dir, ck["fused"])).eval()
    if "blend" in ck:
        singles = {n: load_proxy(work_dir, c) for n, c in ck["blend"]["singles"].items()}
        return BlendedGenerator(model.eval(), singles, ck["blend"]["weights"]).eval()
    return model.eval()
