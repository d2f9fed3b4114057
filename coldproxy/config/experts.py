"""What both trainings read, ``ExpertSettings``: the seed, the ID space's width, how often validation checks and how
patiently, and the diffusion expert, its sampler and the cold-aware gate (MoDiffE §4.2-4.4). The item model
(``TrainSettings``, ``COLDPROXY_*``) and the bundle model (``BundleSettings``, ``COLDPROXY_BUNDLES_*``) each add
only what their own code reads."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings


class ExpertSettings(BaseSettings):
    """Seed, validation, the diffusion expert, its sampler and the cold-aware gate (item and bundle models)"""

    seed: int = Field(0, description="split and training seed; runs with the same seed are the same")
    dim: int = Field(64, description="dimension of the ID space coldproxy trains (a given space keeps its own)")
    eval_every: int = Field(5, description="epochs between validation checks of the ID model and the generators")
    patience: int = Field(4, description="validation checks without a gain before early stopping")
    diffusion_T: int = Field(500, description="training noise steps T")
    diffusion_schedule: Literal["linear", "cosine"] = Field("linear", description="noise schedule")
    diffusion_hidden: int = Field(256, description="denoiser hidden width")
    diffusion_epochs: int = Field(
        200, description="most denoiser epochs; early stopping on validation-cold NDCG@20 decides"
    )
    diffusion_lr: float = Field(1e-3, description="denoiser Adam learning rate")
    diffusion_weight_decay: float = Field(1e-5, description="denoiser Adam weight decay")
    diffusion_batch: int = Field(256, description="warm items per denoiser step")
    diffusion_cond_dropout: float = Field(0.1, description="Gaussian noise on the condition in training, x its std")
    sampler: Literal["ddpm", "dpmpp1", "dpmpp2m"] = Field(
        "dpmpp2m", description="DPM-Solver++ 2M, first order, or DDPM"
    )
    sampler_steps: int = Field(3, description="denoiser calls per item (S)")
    sampler_spacing: Literal["time", "logsnr"] = Field(
        "logsnr", description="the sampler's time grid: even in log-SNR or in time"
    )
    sampler_start: float = Field(0.5, description="anchor's noise level, as a fraction of T")
    anchor_n: int = Field(5, description="warm items averaged into the anchor (eq. 14)")
    gate_epochs: int = Field(30, description="most cold-aware gate epochs")
    gate_lr: float = Field(1e-2, description="gate Adam learning rate")
    gate_batch: int = Field(1024, description="triples per gate step")
    gate_aug_alpha: float = Field(0.4, description="lambda ~ Beta(alpha, alpha) for pseudo-cold items")
