"""Samplers for the x₀-predicting denoiser: DDPM ancestral (the reference) and DPM-Solver++
(Lu et al. 2022) in data-prediction form, first order and second-order multistep (2M).

Every sampler is a *plan* (per-step constants computed once, in float64, from the schedule) and
one loop that applies it with tensor ops only, so the same code runs in training, in the benchmark
and, unrolled with the constants baked in, as the exported ONNX graph.

DPM-Solver++ from s to t (h = λ_t − λ_s):
  x_t = (σ_t/σ_s)·x_s − α_t(e^{−h} − 1)·D
  order 1: D = x̂₀(x_s, s);  2M: D = (1 + 1/(2r))·x̂₀(x_s, s) − (1/(2r))·x̂₀(x_prev, prev), r = h_prev/h.
The first step and the last step are first order. The last step ends at t = 0 (σ = 0, α = 1, λ = ∞),
where the update is exactly D. Inference starts from the anchor at ``t_start`` (MoDiffE eq. 14–15)
or, for the ablation, from Gaussian noise at t = T.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from models.diffusion import NoiseSchedule

SPACINGS = ("time", "logsnr")


def time_grid(sched: NoiseSchedule, steps: int, t_start: float, spacing: str = "logsnr") -> np.ndarray:
    """S+1 times from ``t_start`` down to 0. ``logsnr``: uniform in λ down to t = 1, then to 0."""
    if steps < 1:
        raise ValueError("steps must be >= 1")
    if not 0 < t_start <= sched.T:
        raise ValueError(f"t_start must be in (0, {sched.T}]")
    if spacing == "time":
        return np.linspace(t_start, 0.0, steps + 1)
    if spacing == "logsnr":
        t_min = min(1.0, t_start)
        lams = np.linspace(sched.lam(t_start), sched.lam(t_min), steps)
        return np.concatenate([sched.t_of_lambda(lams), [0.0]]) if steps > 1 else np.array([t_start, 0.0])
    raise ValueError(f"unknown spacing {spacing!r} {SPACINGS}")


@dataclass
class Step:
    t: float  # where the denoiser is evaluated
    a: float  # coefficient of x_s
    b: float  # coefficient of D
    w_cur: float  # D = w_cur·x̂₀(now) + w_prev·x̂₀(previous step)
    w_prev: float
    std: float = 0.0  # ancestral noise (DDPM only)


def dpm_solver_plan(
    sched: NoiseSchedule, steps: int, order: int = 2, t_start: float | None = None, spacing: str = "logsnr"
) -> list[Step]:
    if order not in (1, 2):
        raise ValueError("DPM-Solver++ order must be 1 or 2")
    ts = time_grid(sched, steps, sched.T if t_start is None else t_start, spacing)
    lam, alpha, sigma = sched.lam(ts), sched.alpha(ts), sched.sigma(ts)
    plan, h_prev = [], None
    for i in range(steps):
        last = ts[i + 1] == 0.0
        h = np.inf if last else lam[i + 1] - lam[i]
        a = 0.0 if last else sigma[i + 1] / sigma[i]
        b = 1.0 if last else -alpha[i + 1] * np.expm1(-h)
        if order == 2 and h_prev is not None and not last:
            r = h_prev / h
            w_cur, w_prev = 1 + 1 / (2 * r), -1 / (2 * r)
        else:
            w_cur, w_prev = 1.0, 0.0
        plan.append(Step(float(ts[i]), float(a), float(b), float(w_cur), float(w_prev)))
        h_prev = h
    return plan


def ddpm_plan(sched: NoiseSchedule, steps: int, t_start: float | None = None) -> list[Step]:
    """Ancestral sampling on ``steps`` uniformly spaced times: x_t ~ q(x_t | x_s, x̂₀)."""
    ts = time_grid(sched, steps, sched.T if t_start is None else t_start, "time")
    abar = np.exp(sched.log_alpha_bar(ts))
    plan = []
    for i in range(steps):
        a_s, a_t = abar[i], abar[i + 1]
        a_st = a_s / a_t  # ᾱ_{s|t}
        cx0 = np.sqrt(a_t) * (1 - a_st) / (1 - a_s)
        cxs = np.sqrt(a_st) * (1 - a_t) / (1 - a_s)
        var = (1 - a_st) * (1 - a_t) / (1 - a_s)
        plan.append(Step(float(ts[i]), float(cxs), float(cx0), 1.0, 0.0, float(np.sqrt(max(var, 0.0)))))
    return plan


def run_plan(
    denoiser, x: torch.Tensor, c: torch.Tensor, plan: list[Step], generator: torch.Generator | None = None
) -> torch.Tensor:
    """Apply a plan; one denoiser call per step. Traceable (constants are Python floats)."""
    prev = None
    for st in plan:
        m = denoiser(x, c, torch.full((1,), st.t))
        d = m if st.w_prev == 0.0 else st.w_cur * m + st.w_prev * prev
        x = st.a * x + st.b * d
        if st.std > 0.0:
            x = x + st.std * torch.randn(x.shape, generator=generator)
        prev = m
    return x


def make_plan(
    sched: NoiseSchedule, method: str, steps: int, t_start: float | None = None, spacing: str = "logsnr"
) -> list[Step]:
    """``method``: ``ddpm``, ``dpmpp1`` (DPM-Solver++ first order) or ``dpmpp2m``."""
    if method == "ddpm":
        return ddpm_plan(sched, steps, t_start)
    if method in ("dpmpp1", "dpmpp2m"):
        return dpm_solver_plan(sched, steps, 1 if method == "dpmpp1" else 2, t_start, spacing)
    raise ValueError(f"unknown sampler {method!r} (ddpm, dpmpp1, dpmpp2m)")


SAMPLER_KEYS = ("method", "steps", "spacing", "t_start")  # what a package records of its sampler


def sampler_kwargs(settings) -> dict:
    """``sample``'s method, steps, spacing and start from training settings (items' or bundles')."""
    return {
        "method": settings.sampler,
        "steps": settings.sampler_steps,
        "spacing": settings.sampler_spacing,
        "t_start": settings.sampler_start * settings.diffusion_T,
    }


@torch.no_grad()
def sample(
    denoiser,
    anchor: np.ndarray,
    cond: np.ndarray,
    method: str = "dpmpp2m",
    steps: int = 3,
    t_start: float | None = None,
    spacing: str = "logsnr",
    from_noise: bool = False,
    seed: int = 0,
    batch: int = 8192,
) -> np.ndarray:
    """Diffusion proxies for rows of (anchor, cond). ``from_noise``: start from N(0, I) at t = T."""
    denoiser.eval()
    sched = NoiseSchedule(denoiser.cfg.schedule, denoiser.cfg.T)
    plan = make_plan(sched, method, steps, sched.T if from_noise else t_start, spacing)
    gen = torch.Generator().manual_seed(seed)
    out = []
    for s in range(0, len(cond), batch):
        c = torch.from_numpy(np.ascontiguousarray(cond[s : s + batch], dtype=np.float32))
        x = (
            torch.randn(c.shape[0], denoiser.cfg.dim, generator=gen)
            if from_noise
            else torch.from_numpy(np.ascontiguousarray(anchor[s : s + batch], dtype=np.float32))
        )
        out.append(run_plan(denoiser, x, c, plan, gen).numpy())
    return np.concatenate(out) if out else np.zeros((0, denoiser.cfg.dim), np.float32)


class UnrolledSampler(nn.Module):
    """The deterministic DPM-Solver++ plan unrolled around the denoiser, for ONNX export:
    (anchor [B, d], condition [B, c]) -> diffusion proxy [B, d]."""

    def __init__(self, denoiser, plan: list[Step]):
        super().__init__()
        if any(st.std > 0 for st in plan):
            raise ValueError("only deterministic plans are exported")
        self.denoiser, self.plan = denoiser, plan

    def forward(self, anchor: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        return run_plan(self.denoiser, anchor, condition, self.plan)
