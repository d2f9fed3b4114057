"""Noise schedules, samplers and the exported sampler graph of the diffusion expert."""

import math

import numpy as np
import pytest
import torch

from export.graphs import export_sampler, parity
from models.diffusion import Denoiser, DenoiserConfig, NoiseSchedule
from models.samplers import UnrolledSampler, make_plan, run_plan, time_grid


def test_linear_schedule_constants_match_the_formulas():
    s = NoiseSchedule("linear", T=500, beta_start=1e-4, beta_end=0.02)
    betas = np.linspace(1e-4, 0.02, 500)
    np.testing.assert_allclose(s.betas, betas)
    np.testing.assert_allclose(s.alphas_cumprod[1:], np.cumprod(1 - betas))
    assert s.alphas_cumprod[0] == 1.0
    t = np.array([0.0, 1.0, 37.0, 250.0, 500.0])
    abar = np.cumprod(np.concatenate([[1.0], 1 - betas]))[t.astype(int)]
    np.testing.assert_allclose(s.alpha(t), np.sqrt(abar))
    np.testing.assert_allclose(s.sigma(t), np.sqrt(1 - abar))
    np.testing.assert_allclose(s.alpha(t) ** 2 + s.sigma(t) ** 2, 1.0)
    np.testing.assert_allclose(s.lam(t[1:]), np.log(np.sqrt(abar[1:]) / np.sqrt(1 - abar[1:])))
    lams = np.linspace(s.lam(500.0), s.lam(0.5), 17)
    np.testing.assert_allclose(s.lam(s.t_of_lambda(lams)), lams, atol=1e-9)


def test_cosine_schedule_constants_match_the_formulas():
    T, eps = 500, 0.008
    s = NoiseSchedule("cosine", T=T)
    f = np.cos(((np.arange(T + 1) / T) + eps) / (1 + eps) * math.pi / 2) ** 2
    unclipped = np.arange(1, T + 1)[s.betas < 0.999]
    np.testing.assert_allclose(s.alphas_cumprod[unclipped], (f / f[0])[unclipped], rtol=1e-9)
    assert (s.betas <= 0.999).all() and (np.diff(s.alphas_cumprod) < 0).all()


def test_forward_process_is_alpha_x0_plus_sigma_noise():
    s = NoiseSchedule("linear", 500)
    x0, noise = torch.randn(4, 8), torch.randn(4, 8)
    t = torch.tensor([1, 10, 250, 500])
    got = s.q_sample(x0, t, noise)
    want = (
        torch.from_numpy(s.alpha(t.numpy())).float()[:, None] * x0
        + torch.from_numpy(s.sigma(t.numpy())).float()[:, None] * noise
    )
    torch.testing.assert_close(got, want)


class Fixed(torch.nn.Module):
    def __init__(self, x0):
        super().__init__()
        self.x0 = x0

    def forward(self, x, c, t):
        return self.x0.expand_as(x)


@pytest.mark.parametrize(
    "method,steps,spacing",
    [
        ("ddpm", 500, "time"),
        ("ddpm", 7, "time"),
        ("dpmpp1", 1, "logsnr"),
        ("dpmpp1", 5, "time"),
        ("dpmpp2m", 3, "logsnr"),
        ("dpmpp2m", 10, "time"),
    ],
)
def test_a_denoiser_that_returns_a_fixed_x0_lands_on_it(method, steps, spacing):
    sched = NoiseSchedule("linear", 500)
    x0 = torch.randn(1, 6)
    plan = make_plan(sched, method, steps, 250.0, spacing)
    assert len(plan) == steps
    out = run_plan(Fixed(x0), torch.randn(3, 6) * 4, None, plan, torch.Generator().manual_seed(0))
    torch.testing.assert_close(out, x0.expand(3, 6), atol=1e-5, rtol=0)


class GaussianPosterior(torch.nn.Module):
    """Exact E[x0 | x_t] for data ~ N(mu, s^2 I): the probability-flow ODE has a unique solution."""

    def __init__(self, sched, mu, s2):
        super().__init__()
        self.sched, self.mu, self.s2 = sched, mu, s2

    def forward(self, x, c, t):
        a = float(self.sched.alpha(float(t[0])))
        sig2 = float(self.sched.sigma(float(t[0]))) ** 2
        return self.mu + a * self.s2 / (a * a * self.s2 + sig2) * (x - a * self.mu)


def test_dpm_solver_2m_with_20_steps_matches_first_order_with_1000_steps():
    sched = NoiseSchedule("linear", 500)
    model = GaussianPosterior(sched, torch.linspace(-1, 1, 8), 0.3)
    x = torch.randn(16, 8, generator=torch.Generator().manual_seed(1))
    fine = run_plan(model, x, None, make_plan(sched, "dpmpp1", 1000, 500.0, "time"))
    fast = run_plan(model, x, None, make_plan(sched, "dpmpp2m", 20, 500.0, "logsnr"))
    coarse = run_plan(model, x, None, make_plan(sched, "dpmpp1", 20, 500.0, "logsnr"))
    err2, err1 = (fast - fine).abs().max().item(), (coarse - fine).abs().max().item()
    scale = fine.std().item()
    assert err2 < 0.025 * scale, (err2, scale)  # measured: 0.019 on outputs of std 0.82
    assert err2 < err1 / 5, (err2, err1)  # second order: much closer than first order at the same steps (0.16)


def test_time_grid_ends_at_zero_and_is_uniform_in_its_spacing():
    sched = NoiseSchedule("cosine", 500)
    g = time_grid(sched, 6, 400.0, "logsnr")
    assert g[0] == 400.0 and g[-1] == 0.0 and len(g) == 7 and (np.diff(g) < 0).all()
    np.testing.assert_allclose(np.diff(sched.lam(g[:-1])), np.diff(sched.lam(g[:-1])).mean(), rtol=1e-6)
    np.testing.assert_allclose(np.diff(time_grid(sched, 4, 400.0, "time")), -100.0)


def test_onnx_sampler_graph_matches_torch(tmp_path):
    torch.manual_seed(0)
    den = Denoiser(DenoiserConfig(dim=16, cond_dim=16, hidden=32, T=500)).eval()
    plan = make_plan(NoiseSchedule("linear", 500), "dpmpp2m", 3, 250.0, "logsnr")
    module = UnrolledSampler(den, plan)
    path = export_sampler(module, tmp_path / "sampler.onnx")
    rng = np.random.default_rng(0)
    feeds = {
        "anchor": rng.standard_normal((5, 16)).astype(np.float32),
        "condition": rng.standard_normal((5, 16)).astype(np.float32),
    }
    assert parity(module, path, feeds) < 1e-4


def test_the_sampler_is_chosen_on_validation_from_the_grid_and_the_configured_one_wins_ties():
    from coldproxy.config import TrainSettings
    from models.data import Interactions
    from models.evaluate import validation_cold_ndcg
    from models.items.experts import choose_sampler
    from models.samplers import sample, sampler_kwargs
    from models.split import ColdStartSplit

    rng = np.random.default_rng(0)
    n, d, n_users = 60, 8, 30
    users = rng.standard_normal((n_users, d)).astype(np.float32)
    anchor, cond = (rng.standard_normal((n, d)).astype(np.float32) for _ in range(2))
    torch.manual_seed(0)
    den = Denoiser(DenoiserConfig(dim=d, cond_dim=d, hidden=16)).eval()
    val, empty = np.arange(40, 60), Interactions(np.zeros(0, int), np.zeros(0, int))
    positives = Interactions(rng.integers(0, n_users, 100), rng.choice(val, 100))
    split = ColdStartSplit(np.arange(40), val, np.zeros(0, int), empty, empty, empty, positives, empty, 0)
    s = TrainSettings(sampler_steps=3, sampler_start=0.5)
    kw, scores = choose_sampler(den, anchor, cond, users, split, s, sampler_kwargs(s) | {"seed": 0})
    assert len(scores) == 9 and scores[f"S={kw['steps']} start={kw['t_start'] / s.diffusion_T:g}"] == max(
        scores.values()
    )
    probe = np.zeros_like(anchor)
    probe[val] = sample(den, anchor[val], cond[val], **kw)
    assert validation_cold_ndcg(users, probe, split) == pytest.approx(max(scores.values()))
    # users who cannot tell items apart: every grid point ties, and the configured sampler stays
    kw, scores = choose_sampler(den, anchor, cond, np.zeros_like(users), split, s, sampler_kwargs(s) | {"seed": 0})
    assert len(set(scores.values())) == 1 and (kw["steps"], kw["t_start"]) == (3, 0.5 * s.diffusion_T)
