"""Export a trained bundle model (``models.bundles.train``) as a bundle recommender package the service serves.

The B-view sampler and the hierarchical gate become ONNX graphs and the cold calibration a manifest
entry; the arrays a new bundle needs (members' item-view prior and diffusion vectors, composition
embeddings, click counts, the warm bundles' conditions and B-view embeddings for anchors) and the
vectors served as they are (users, warm bundles) go to ``embeddings.npz``. Each graph is checked
against torch on real bundles, and the package as a whole: ``coldproxy.bundle_package.BundleEmbedder``
-- the service's own code -- must reproduce the trained model's vectors of bundles without interactions. A package over
the tolerance is refused.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from coldproxy.bundle_package import FILES, BundleEmbedder, BundlePackageManifest, load_bundle_package
from coldproxy.config import BundleSettings
from coldproxy.errors import ParityError
from coldproxy.graph_io import BUNDLE_GATE_INPUTS, SAMPLER_INPUTS
from coldproxy.package import replace_dir, seen_table, sha256_file, staging_dir, write_manifest
from export.graphs import export_bundle_gate, export_sampler, parity
from export.package import package_version
from models.bundles.train import BundleModel
from models.diffusion import NoiseSchedule
from models.samplers import UnrolledSampler, make_plan, sampler_kwargs


def build_bundle_package(model: BundleModel, settings: BundleSettings, out: Path | None = None) -> Path:
    if model.gate is None or model.diffusion is None:
        raise ValueError("only the full model (diffusion experts + gate) is served; train with use_diffusion")
    kw = sampler_kwargs(settings)
    if kw["method"] == "ddpm":
        raise ValueError("the ancestral DDPM sampler is stochastic; export a DPM-Solver++ sampler")
    out = Path(out or settings.package_dir)
    stage = staging_dir(out)
    d, vd, ex = model.data, model.diffusion, model.experts
    warm = d.warm_bundles
    den_b = vd.denoisers[0]
    sampler = UnrolledSampler(
        den_b,
        make_plan(
            NoiseSchedule(den_b.cfg.schedule, den_b.cfg.T), kw["method"], kw["steps"], kw["t_start"], kw["spacing"]
        ),
    )
    export_sampler(sampler, stage / FILES["sampler"])
    export_bundle_gate(model.gate, settings.dim, stage / FILES["gate"])
    served = model.bundle_vectors()
    np.savez(
        stage / FILES["embeddings"],
        user_ids=np.arange(d.n_users).astype(str),
        user_emb=model.user_vectors(),
        item_ids=np.arange(d.n_items).astype(str),
        item_prior=model.prior.iI.astype(np.float32),
        item_diffusion=vd.item_diffusion,
        item_composition=model.comp.astype(np.float32),
        item_counts=d.item_counts(),
        bundle_ids=warm.astype(str),
        bundle_emb=served[warm],
        bundle_condition=vd.condition[warm],
        bundle_prior=model.prior.bB[warm].astype(np.float32),
        **dict(zip(("seen_indptr", "seen_items"), seen_table(d.n_users, d.n_bundles, warm, d.train))),
    )

    rng = np.random.default_rng(settings.seed)
    new = np.setdiff1d(np.arange(d.n_bundles), warm)
    new = rng.choice(new, min(settings.parity_bundles, len(new)), replace=False) if len(new) else new
    known = rng.choice(warm, min(settings.parity_bundles, len(warm)), replace=False)
    probe = np.concatenate([new, known])
    report = {
        "sampler": parity(
            sampler, stage / FILES["sampler"], dict(zip(SAMPLER_INPUTS, (vd.anchor[probe], vd.condition[probe])))
        ),
        "gate": parity(
            model.gate,
            stage / FILES["gate"],
            dict(
                zip(
                    BUNDLE_GATE_INPUTS,
                    (ex.aB[probe], ex.aI[probe], ex.eB[probe], ex.dB[probe], ex.eI[probe], ex.dI[probe]),
                )
            ),
        ),
    }
    files = {c: sha256_file(stage / n) for c, n in FILES.items()}
    now = datetime.now(timezone.utc)
    with torch.no_grad():
        metrics = {k: float(v) for k, v in model.test_metrics().items()}
    manifest = BundlePackageManifest(
        version=package_version(files, now),
        created_at=now.isoformat(),
        dim=settings.dim,
        scenario=d.scenario,
        anchor_n=settings.anchor_n,
        item_pooling=settings.item_pooling,
        calibration=model.calibration,
        sampler=kw,
        files=files,
        parity=report,
        metrics={
            "test": metrics,
            "prior": {k: model.log["prior"].get(k) for k in ("best_tune_ndcg@20", "epochs_run", "fixed_epochs")},
            "gate": {
                "best_tune_ndcg@20": model.log["gate"]["best_tune_ndcg@20"],
                "variant": model.log["gate"].get("variant"),
            },
            "gate_selection": model.log.get("gate_selection"),
            "calibration": model.log.get("calibration"),
        },
        provenance={
            "data_dir": str(settings.data_dir),
            "scenario": d.scenario,
            "seed": settings.seed,
            "sizes": {"users": d.n_users, "bundles": d.n_bundles, "items": d.n_items},
            "settings": settings.model_dump(
                mode="json", exclude={"data_dir", "package_dir", "cache_dir", "work_dir", "package_dir"}
            ),
        },
        counts={"users": d.n_users, "items": d.n_items, "warm_bundles": len(warm)},
    )
    write_manifest(stage, manifest)
    if len(new):  # the package end to end, through the service's code, on bundles without interactions
        members = d.members()
        got = BundleEmbedder(load_bundle_package(stage), {"providers": ["CPUExecutionProvider"]}).embed(
            [members[b] for b in new]
        )
        report["end_to_end"] = float(np.abs(got.embedding - served[new]).max())
        write_manifest(stage, manifest.model_copy(update={"parity": report}))
    bad = {k: v for k, v in report.items() if not v < settings.parity_tolerance}
    if bad:
        raise ParityError(f"ONNX vs torch max |delta| over {settings.parity_tolerance}: {bad}")
    load_bundle_package(stage)
    return replace_dir(stage, out)
