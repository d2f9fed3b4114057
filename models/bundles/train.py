"""The bundle model end to end (MoDiffE Alg. 3 and the cold calibration): stage 1 of
``models.bundles.backbone``, stages 2-3 of ``models.bundles.model``, stage 4 of
``models.bundles.calibration``, the choice of the served stage-3 variant on the tune split, and
``BundleModel``, what ``export.bundle_package`` packages.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from coldproxy.bundle_package import ColdCalibration, with_columns
from coldproxy.config import BundleSettings
from models.bundles.backbone import Prior, evaluate, train_prior
from models.bundles.calibration import calibrate_cold, served_users, served_vectors
from models.bundles.data import BundleData
from models.bundles.model import (
    HierarchicalGate,
    ViewDiffusion,
    ViewExperts,
    cold_aware_features,
    composition_features,
    fit_view_experts,
    train_gates,
)
from models.training import use_usable_cores


@dataclass
class BundleModel:
    data: BundleData
    prior: Prior
    comp: np.ndarray  # composition item embeddings [n_items, dim]
    experts: ViewExperts
    diffusion: ViewDiffusion | None
    gate: HierarchicalGate | None
    log: dict
    calibration: ColdCalibration = field(default_factory=ColdCalibration)
    placement: np.ndarray | float = 0.0  # the users' placement offsets t_u (stage 4), 0 when off

    def user_vectors(self) -> np.ndarray:
        """[n_users, 2·dim + 2]: [r_u^B ; r_u^I ; 1 ; t_u]."""
        return served_users(self.prior.users(), self.placement)

    def gated_vectors(self) -> np.ndarray:
        """The hierarchical gate's [n_bundles, 2·dim]; without a gate, the prior's [r_b^B ; r_b^I] (the backbone)."""
        if self.gate is None:
            return np.concatenate([self.prior.bB, self.prior.bI], 1).astype(np.float32)
        ex = self.experts
        with torch.no_grad():
            return self.gate(*(torch.from_numpy(x) for x in (ex.aB, ex.aI, ex.eB, ex.dB, ex.eI, ex.dI)))[0].numpy()

    def bundle_vectors(self) -> np.ndarray:
        """Served bundle vectors [n_bundles, 2·dim + 2] (``served_vectors``); the backbone's end in 0, 0."""
        if self.diffusion is None:
            return with_columns(self.gated_vectors(), 0.0, 0.0)
        return served_vectors(self.data, self.gated_vectors(), self.diffusion.anchor, self.calibration)

    def test_metrics(self) -> dict[str, float]:
        U, Bv = self.user_vectors(), self.bundle_vectors()
        return evaluate(self.data, self.data.test, lambda us: U[us] @ Bv.T)


def train_bundle_model(data: BundleData, settings: BundleSettings, progress: bool = True) -> BundleModel:
    """Stages 1-3 (Alg. 3) and the cold calibration; each of ``settings.gate_variants`` is trained and
    calibrated, and the one best on the tune split served. Without ``use_diffusion`` it stops after the
    prior (the backbone)."""
    use_usable_cores()
    prior, log_p = train_prior(data, settings, progress)
    comp = composition_features(data, settings, progress)
    aB, aI = cold_aware_features(data, data.bundle_counts())
    if not settings.use_diffusion:
        ex = ViewExperts(prior.bB, prior.bB, prior.bI, prior.bI, aB, aI)
        return BundleModel(data, prior, comp, ex, None, None, {"prior": log_p})
    vd = fit_view_experts(data, prior, comp, settings, progress)
    ex = ViewExperts(prior.bB, vd.dB, prior.bI, vd.dI, aB, aI)
    candidates: dict[str, tuple[float, BundleModel]] = {}
    for name in settings.gate_variants:
        s_v, eta = gate_variant(settings, data.scenario, name)
        gate, log_g = train_gates(data, prior, ex, s_v, eta, progress)
        log = {"prior": log_p, "diffusion": vd.log, "gate": log_g | {"variant": name}}
        model = BundleModel(data, prior, comp, ex, vd, gate, log)
        tune = log_g["best_tune_ndcg@20"]
        if settings.cold_calibration:
            model.calibration, model.placement, log["calibration"] = calibrate_cold(
                data, prior.users(), model.gated_vectors(), vd.anchor, settings, progress
            )
            tune = model.log["calibration"]["tune_ndcg@20"]
        candidates[name] = (tune, model)
    chosen = max(candidates, key=lambda k: candidates[k][0])  # the first listed wins a tie
    model = candidates[chosen][1]
    model.log["gate_selection"] = {"chosen": chosen, "tune_ndcg@20": {k: v[0] for k, v in candidates.items()}}
    return model


GATE_VARIANTS = ("full", "no_augmentation", "no_output_gate")


def gate_variant(settings: BundleSettings, scenario: str, name: str) -> tuple[BundleSettings, float]:
    """(settings, η) of a stage-3 variant: ``full`` as configured, ``no_augmentation`` with η = 0,
    ``no_output_gate`` with both views weighted 1."""
    if name not in GATE_VARIANTS:
        raise ValueError(f"unknown gate variant {name!r}; one of {GATE_VARIANTS}")
    eta = 0.0 if name == "no_augmentation" else settings.aug_eta[scenario]
    return (settings.model_copy(update={"output_gate": False}) if name == "no_output_gate" else settings), eta
