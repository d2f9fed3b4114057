"""``BundleSettings``: what ``coldproxy train-bundles`` reads (``COLDPROXY_BUNDLES_*``): MoDiffE on Youshu."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, model_validator
from pydantic_settings import SettingsConfigDict

from coldproxy.config.base import DEFAULT_DATASETS, MEASURED, REPO_ROOT
from coldproxy.config.experts import ExpertSettings

# the item level's settings where they are not set, per scenario: chosen on each scenario's tune split by the rule
# with a floor (models/decision.py; docs/ablations.md, "The decision rule")
ITEM_LEVEL_DEFAULTS = {
    "item_pooling": {"cold": 0.5, "warm": 1.0, "all": 1.0},
    "item_bpr_weight": {"cold": 1.0, "warm": 0.0, "all": 0.0},
}


class BundleSettings(ExpertSettings):
    """The bundle model's own settings: MoDiffE on Youshu, its backbone, calibration and package"""

    model_config = SettingsConfigDict(env_prefix="COLDPROXY_BUNDLES_", env_file=".env", extra="ignore")
    data_dir: Path = Field(DEFAULT_DATASETS / "youshu", description="Youshu (CoHeat release) directory")
    scenario: Literal["cold", "warm", "all"] = Field(
        "all",
        description="the Youshu split trained and served: all (new "
        "bundles ranked among warm ones, what a product meets: the "
        "default), cold (every test bundle is new: its calibration lifts "
        "any new bundle, even one of random items, above warm ones; "
        "bench/results/bundle_exposure.md), or warm",
    )
    # stage 1 (models/bundles/backbone.py): CrossCBR's published settings, chosen over the earlier defaults at
    # stage 1 on the warm tune split, 3 seeds (bench/results/bundle_backbone.md)
    lightgcn_layers: int = Field(1, description="propagation layers of each view (CrossCBR: 1)")
    shared_user_table: bool = Field(True, description="one user table for both views (CrossCBR); off: one per view")
    layer_combine: Literal["mean", "normalised_sum"] = Field(
        "normalised_sum",
        description="how a view combines its layers: "
        "LightGCN's mean, or CrossCBR's layer 0 plus each "
        "propagated layer L2-normalised",
    )
    edge_dropout: float = Field(
        0.2,
        ge=0.0,
        lt=1.0,
        description="share of the user-bundle, user-item and bundle-item "
        "edges dropped from the training graphs, resampled every epoch (CrossCBR's ED)",
    )
    init: Literal["normal", "xavier"] = Field(
        "xavier",
        description="base tables' initialisation: N(0, 0.1), or "
        "Xavier normal as CrossCBR (a small layer 0 beside normalised layers)",
    )
    id_epochs: int = Field(100, description="most stage-1 epochs; early-stopped on the tune split")
    prior_fixed_epochs: dict[str, int] = Field(
        {"cold": 60},
        description="scenarios whose prior trains exactly this many "
        "epochs (at most id_epochs) instead of early-stopping: the cold tune "
        "split "
        "holds only bundles the prior never saw, so its NDCG is noise; 60: the "
        "median best epoch on the warm tune split (40, 60, 100 over 3 seeds)",
    )
    id_lr: float = Field(1e-3, description="stage-1 Adam learning rate")
    id_reg: float = Field(0.0, description="L2 on the batch's base embeddings, per triple")
    id_weight_decay: float = Field(
        1e-4, ge=0.0, description="Adam weight decay on every stage-1 parameter, every step (CrossCBR's l2_reg: 1e-4)"
    )
    id_batch: int = Field(2048, description="(user, bundle) triples per stage-1 step")
    contrast_weight: float = Field(
        0.02, description="weight of each cross-view InfoNCE term, users' and bundles' (CrossCBR: 0.04 on their mean)"
    )
    contrast_temp: float = Field(0.25, description="cross-view InfoNCE temperature")
    bpr_negatives: int = Field(
        1,
        ge=1,
        description="warm bundles sampled as negatives per (user, bundle) triple, "
        "the BPR loss averaged over them (CrossCBR: 1; 4 did not clear the decision floor: docs/ablations.md)",
    )
    item_bpr_weight: float | None = Field(
        None,
        ge=0.0,
        description="BPR on user-item interactions in the item-level view (MoDiffE eq. 2: CF on Y); unset: the "
        "scenario's default (ITEM_LEVEL_DEFAULTS: 1 for cold, off for warm and all as in CrossCBR; docs/ablations.md)",
    )
    item_pooling: float | None = Field(
        None,
        ge=0.0,
        le=1.0,
        description="the item-level view's bundle: the sum of its items' vectors over members^p. 1: their mean "
        "(MoDiffE eq. 5); 0.5 grows with how much the members agree, not with their number alone (random items' "
        "vectors cancel; bench/results/bundle_item_view.md); unset: the scenario's default (ITEM_LEVEL_DEFAULTS: "
        "0.5 for cold, 1 for warm and all; docs/ablations.md)",
    )
    composition_epochs: int = Field(20, description="bundle-item LightGCN epochs for the composition features")
    diffusion_epochs: int = Field(100, description="most denoiser epochs")
    anchor_n: int = Field(10, description="warm neighbours averaged into the anchor (MoDiffE: 10 on Youshu)")
    aug_eta: dict[str, float] = Field(
        {"cold": 30.0, "warm": 0.1, "all": 0.5},
        description="weight of the pseudo-cold loss (eta, eq. 23; at most one "
        "pseudo-cold "
        "triple per real one), per scenario; cold chosen on the cold tune "
        "split "
        f"({MEASURED})",
    )
    output_gate: bool = Field(True, description="tanh output-layer gate over views (False: both views weight 1)")
    use_diffusion: bool = Field(True, description="train the diffusion expert (off: the gate mixes the prior only)")
    gate_variants: list[Literal["full", "no_augmentation", "no_output_gate"]] = Field(
        ["full", "no_augmentation", "no_output_gate"],
        min_length=1,
        description="stage-3 variants trained (each calibrated); the "
        "one best on the tune split is served, the first listed on a tie. full: as configured; no_augmentation: "
        "eta 0; no_output_gate: both views weight 1",
    )
    cold_calibration: bool = Field(
        True,
        description="stage 4: choose on the tune split how bundles without "
        "interactions are served (per-view scales, the bundle view's source, a "
        "log(size) prior); off: the gate's vectors as they are",
    )
    calibration_view_grid: list[float] = Field(
        [0.0, 0.5, 1.0, 2.0, 4.0, 8.0], description="scales tried for each view of a cold bundle"
    )
    calibration_size_grid: list[float] = Field(
        [0.0, 1.0, 2.0, 4.0, 8.0], description="weights alpha tried for the size prior alpha*log(members)"
    )
    calibration_offset_grid: list[float] = Field(
        [-2.0, -1.0, -0.5, -0.25, 0.0, 0.25, 0.5, 1.0, 2.0],
        description="offsets tried for every bundle without interactions, in "
        "units of the std of the tune users' warm-bundle scores",
    )
    calibration_sources: list[Literal["gate", "anchor"]] = Field(
        ["gate", "anchor"], description="bundle-view sources tried: the gate's, or the anchor undenoised"
    )
    calibration_cold_slots_grid: list[int] = Field(
        list(range(1, 20)),
        description="per-user placement: the k tried (0, "
        "off, is always tried first); each user's offset aligns their k-th "
        "best "
        "bundle without interactions with their (list_length - k)-th best "
        "warm one",
    )
    calibration_placement_pool: Literal["all_new", "tune_new"] = Field(
        "tune_new",
        description="the bundles without interactions each user's placement offset is fitted against: "
        "tune_new, only those new in the tune split (inductive: what a served system has before new bundles arrive, "
        "the default); all_new, every one in the catalogue at training (transductive: the test split's too, over "
        "their vectors, never their labels)",
    )
    calibration_list_length: int = Field(20, ge=2, description="the ranked list the per-user placement fills")
    package_dir: Path = Field(
        REPO_ROOT / "artifacts" / "bundle_package",
        validation_alias=AliasChoices("package_dir", "COLDPROXY_BUNDLES_PACKAGE_DIR", "COLDPROXY_BUNDLE_PACKAGE_DIR"),
        description="where `coldproxy train-bundles` writes the bundle model package (the "
        "service reads it from the same variable; COLDPROXY_BUNDLE_PACKAGE_DIR, the service's "
        "old name, is deprecated)",
    )
    parity_bundles: int = Field(64, description="bundles each exported graph is checked on against torch")
    parity_tolerance: float = Field(
        1e-4, description="largest difference export accepts between ONNX Runtime and torch"
    )

    @model_validator(mode="after")
    def _scenario_defaults(self):
        for name, by_scenario in ITEM_LEVEL_DEFAULTS.items():
            if getattr(self, name) is None:
                setattr(self, name, by_scenario[self.scenario])
        return self

    @model_validator(mode="after")
    def _slots_inside_the_list(self):
        bad = [k for k in self.calibration_cold_slots_grid if not 0 < k < self.calibration_list_length]
        if bad:
            raise ValueError(f"calibration_cold_slots_grid: {bad} outside 1..{self.calibration_list_length - 1}")
        return self
