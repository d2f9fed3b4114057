"""Diffusion expert (MoDiffE §4.2): noise schedules, the forward process, and a conditional
denoiser that predicts x₀ from (x_t, c, t), trained on warm items' ID embeddings.

Schedules are discrete (T steps, β_1..β_T) and extended to continuous time t ∈ [0, T] by linear
interpolation of log ᾱ between integer steps, with ᾱ(0) = 1 (t = 0 is clean data). This is what
lets DPM-Solver++ use any time grid, uniform in t or in λ = log(α/σ).

  linear (DDPM):  β_i = linspace(β_1, β_T, T)          ᾱ_i = Π_{j≤i} (1 − β_j)
  cosine (Nichol & Dhariwal):  ᾱ_i = f(i)/f(0),  f(i) = cos²(((i/T) + s)/(1 + s) · π/2),  β_i ≤ 0.999
  forward (eq. 9–10):  x_t = α_t x₀ + σ_t ε,  α_t = √ᾱ_t,  σ_t = √(1 − ᾱ_t)
  training (eq. 13):   t ~ U{1..T},  L = ‖x₀ − f_θ(x_t, c, t)‖²
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from models.training import EarlyStopping, fit, seed_everything


class NoiseSchedule:
    """ᾱ on integer steps 0..T (ᾱ_0 = 1) and α, σ, λ at any real t in [0, T]."""

    def __init__(
        self,
        kind: str = "linear",
        T: int = 500,
        beta_start: float = 1e-4,
        beta_end: float = 0.02,
        cosine_s: float = 0.008,
    ):
        self.kind, self.T = kind, T
        if kind == "linear":
            betas = np.linspace(beta_start, beta_end, T, dtype=np.float64)
            abar = np.cumprod(1.0 - betas)
        elif kind == "cosine":
            f = np.cos(((np.arange(T + 1) / T) + cosine_s) / (1 + cosine_s) * math.pi / 2) ** 2
            betas = np.clip(1.0 - f[1:] / f[:-1], 0.0, 0.999)
            abar = np.cumprod(1.0 - betas)
        else:
            raise ValueError(f"unknown noise schedule {kind!r} (linear, cosine)")
        self.betas = betas  # β_1..β_T
        self.alphas_cumprod = np.concatenate([[1.0], abar])  # ᾱ_0..ᾱ_T
        self._log_abar = np.log(self.alphas_cumprod)

    def log_alpha_bar(self, t) -> np.ndarray:
        return np.interp(np.asarray(t, dtype=np.float64), np.arange(self.T + 1), self._log_abar)

    def alpha(self, t) -> np.ndarray:
        return np.exp(0.5 * self.log_alpha_bar(t))

    def sigma(self, t) -> np.ndarray:
        return np.sqrt(-np.expm1(self.log_alpha_bar(t)))

    def lam(self, t) -> np.ndarray:
        """λ_t = log(α_t/σ_t); +inf at t = 0."""
        la = self.log_alpha_bar(t)
        with np.errstate(divide="ignore"):
            return 0.5 * la - 0.5 * np.log(-np.expm1(la))

    def t_of_lambda(self, lam) -> np.ndarray:
        """Inverse of λ: ᾱ = sigmoid(2λ), then invert the piecewise-linear log ᾱ(t)."""
        la = -np.logaddexp(0.0, -2.0 * np.asarray(lam, dtype=np.float64))
        return np.interp(-la, -self._log_abar, np.arange(self.T + 1))

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Forward process eq. 10 at (integer or real) times t [B]."""
        a = torch.from_numpy(self.alpha(t.numpy())).to(x0.dtype)[:, None]
        s = torch.from_numpy(self.sigma(t.numpy())).to(x0.dtype)[:, None]
        return a * x0 + s * noise


def timestep_embedding(t: torch.Tensor, dim: int, T: int) -> torch.Tensor:
    """Sinusoidal embedding of real-valued t (any shape broadcastable to [B]) -> [..., dim]."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32) / half)
    args = (t.to(torch.float32) * (1000.0 / T)).reshape(-1, 1) * freqs[None, :]
    return torch.cat([torch.sin(args), torch.cos(args)], dim=-1)


@dataclass
class DenoiserConfig:
    dim: int  # ID-embedding dimension (x)
    cond_dim: int  # condition dimension (c)
    hidden: int = 256
    time_dim: int = 64
    T: int = 500
    schedule: str = "linear"

    def to_dict(self) -> dict:
        return asdict(self)


class Denoiser(nn.Module):
    """f_θ(x_t, c, t) → x̂₀. Time enters additively after its own projection, so t may be a scalar
    (one step for the whole batch, as in the unrolled sampler graph) or one value per row."""

    def __init__(self, cfg: DenoiserConfig):
        super().__init__()
        self.cfg = cfg
        self.inp = nn.Linear(cfg.dim + cfg.cond_dim, cfg.hidden)
        self.time = nn.Sequential(nn.Linear(cfg.time_dim, cfg.hidden), nn.SiLU(), nn.Linear(cfg.hidden, cfg.hidden))
        self.body = nn.Sequential(
            nn.SiLU(),
            nn.Linear(cfg.hidden, cfg.hidden),
            nn.SiLU(),
            nn.Linear(cfg.hidden, cfg.hidden),
            nn.SiLU(),
            nn.Linear(cfg.hidden, cfg.dim),
        )
        # condition -> x₀ shortcut: the network learns a correction on top of a linear map of c
        self.skip = nn.Linear(cfg.cond_dim, cfg.dim)

    def forward(self, x_t: torch.Tensor, c: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        h = self.inp(torch.cat([x_t, c], dim=-1)) + self.time(timestep_embedding(t, self.cfg.time_dim, self.cfg.T))
        return self.body(h) + self.skip(c)


def train_diffusion(
    x0: np.ndarray,
    cond: np.ndarray,
    settings,
    validate=None,
    progress: bool = True,
    desc: str = "diffusion",
    epochs: int | None = None,
) -> tuple[Denoiser, dict]:
    """Algorithm 1: fit f_θ on (warm ID embedding x₀, condition c) pairs with the x₀-prediction loss.

    ``validate(model) -> float`` (higher is better) drives early stopping every ``s.eval_every``
    epochs when given; otherwise the last epoch is kept, after ``epochs`` (a refit) or ``s.diffusion_epochs``.
    """
    rng = seed_everything(settings.seed)
    cfg = DenoiserConfig(
        dim=x0.shape[1],
        cond_dim=cond.shape[1],
        hidden=settings.diffusion_hidden,
        T=settings.diffusion_T,
        schedule=settings.diffusion_schedule,
    )
    model = Denoiser(cfg)
    sched = NoiseSchedule(cfg.schedule, cfg.T)
    opt = torch.optim.AdamW(model.parameters(), lr=settings.diffusion_lr, weight_decay=settings.diffusion_weight_decay)
    X, C = torch.from_numpy(x0.astype(np.float32)), torch.from_numpy(cond.astype(np.float32))
    gen = torch.Generator().manual_seed(settings.seed)
    stopper = EarlyStopping(settings.patience, None if validate is not None else epochs or settings.diffusion_epochs)

    def step(epoch: int) -> dict:
        model.train()
        perm = rng.permutation(len(X))
        total = 0.0
        for b in range(0, len(X), settings.diffusion_batch):
            idx = torch.from_numpy(perm[b : b + settings.diffusion_batch])
            t = torch.randint(1, cfg.T + 1, (len(idx),), generator=gen)
            noise = torch.randn(len(idx), cfg.dim, generator=gen)
            x_t = sched.q_sample(X[idx], t, noise)
            c = C[idx]
            # c is in-sample for warm items; noise it so cold items' c is not a surprise
            if settings.diffusion_cond_dropout > 0:
                c = c + settings.diffusion_cond_dropout * c.std(0, keepdim=True) * torch.randn(c.shape, generator=gen)
            loss = ((model(x_t, c, t.float()) - X[idx]) ** 2).sum(-1).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        return {"loss": total / len(X)}

    def score() -> dict:
        model.eval()
        return {"val_cold_ndcg@20": validate(model)}

    def snapshot():
        return {k: v.clone() for k, v in model.state_dict().items()}

    log = fit(
        settings.diffusion_epochs,
        step,
        score,
        stopper,
        snapshot,
        desc=desc,
        progress=progress,
        eval_every=settings.eval_every,
    )
    if stopper.state is not None:
        model.load_state_dict(stopper.state)
    model.eval()
    out = {"epochs_run": len(log), "best_epoch": stopper.best_epoch, "history": log}
    return model, out | ({"best_val_cold_ndcg@20": stopper.best} if stopper.validating else {})
