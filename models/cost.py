"""What a training run will cost, said before it starts (issue 40): each stage's seconds from the data's size and
the settings, from per-unit costs measured on this project's 2-core machine (``bench/train_scale.py``; the runs are
in ``bench/results/train_scale.md``, fitted to its 100k and 1M purchase runs), scaled by the usable cores. At 3M
purchases the ID model ran 120 epochs, not 55, at 3.2e-7 s a positive a step, so the estimate said 2,411 s for a
4,741 s run: past about a million purchases, read it as a lower bound.

Early stopping decides how many epochs each stage really runs; the estimate takes the typical counts measured
there, so it says how long a run takes, within a factor of about two, not to the minute.
"""

from __future__ import annotations

from dataclasses import dataclass

from models.idmodel import id_batch_and_lr

MEASURED_CORES = 2


@dataclass(frozen=True)
class UnitCosts:
    """Seconds per unit of work on the measuring machine (2 cores), and the typical epoch counts."""

    feature_item: float = 0.016  # one item's text and picture through the encoders (a feature-cache miss)
    id_step: float = 0.006  # one ID-model BPR step: fixed part
    id_step_positive: float = 1.4e-7  # ... and per training positive (the step propagates over the whole graph, CSR)
    id_epochs: int = 55  # 55 (best 35) at 100k and 1M purchases
    generator_step: float = 0.06  # one generator step of 1,024 clicks, averaged over fused / text-only / image-only
    generator_best_epoch: int = 12  # best 11 at 100k purchases, 14 at 1M; a generator runs proxy_patience more
    gate_step: float = 0.02
    gate_epochs: int = 15
    diffusion_item_epoch: float = 2e-4  # one warm item through the denoiser's training, one epoch
    diffusion_epochs: int = 60
    score_pair: float = 4e-9  # one (user, item) score in validation, calibration and evaluation
    calibration_scores: int = 180  # calibration's grid and the evaluation, in full (user, item) score passes
    export: float = 10.0  # ONNX export of the generator and the expert graphs, and the parity checks (encoders cached)


def _steps(n: int, batch: int, cap: int) -> int:
    steps = -(-n // batch) if n else 0
    return min(steps, cap) if cap else steps


def estimate(
    settings,
    n_items: int,
    n_users: int,
    n_train: int,
    n_warm_val: int,
    n_warm: int,
    encode_items: int,
    generators: int,
    cores: int,
    unit: UnitCosts = UnitCosts(),
) -> dict[str, float]:
    """Seconds per stage for a run of ``settings`` on data of these sizes; ``encode_items``: items whose features the
    cache lacks, ``generators``: how many generators train."""
    id_steps = _steps(n_train, id_batch_and_lr(n_train, settings)[0], 0)  # the ID model's own budget: its batch grows
    scores = n_users * n_items * unit.score_pair
    out = {
        "features": encode_items * unit.feature_item,
        "id_model": unit.id_epochs
        * (id_steps * (unit.id_step + unit.id_step_positive * n_train) + scores / settings.eval_every),
        "generators": generators
        * (unit.generator_best_epoch + settings.proxy_patience)
        * (
            _steps(n_train, settings.proxy_batch, settings.proxy_steps_per_epoch)
            * unit.generator_step
            * settings.proxy_batch
            / 1024
            + scores / 10
        ),
        "diffusion+gate": (
            unit.diffusion_epochs * n_warm * unit.diffusion_item_epoch
            + unit.gate_epochs * _steps(n_warm_val, settings.gate_batch, settings.gate_steps_per_epoch) * unit.gate_step
        )
        if settings.diffusion
        else 0.0,
        "calibration+evaluation": unit.calibration_scores * scores,
        "export": unit.export,
    }
    scale = MEASURED_CORES / max(1, min(cores, 8))  # torch's CPU kernels stop scaling well beyond a few cores
    return {k: v * scale for k, v in out.items()}


# `coldproxy train-bundles` on Youshu, seconds on 2 cores: cold measured (246 s, beside a serving replica, from
# `coldproxy up` on a fresh clone), all measured alone (417 s, seed 0); warm scaled by its ratio to cold in
# bench/bundles.py's runs (bench/results/bundles.json: 456, 1,020 and 555 s a seed there, with every ablation variant)
BUNDLE_SECONDS = {"cold": 246.0, "warm": 550.0, "all": 417.0}


def bundle_estimate(scenario: str, cores: int) -> float:
    """Seconds ``coldproxy train-bundles`` should take on ``scenario`` with ``cores`` usable cores."""
    return BUNDLE_SECONDS[scenario] * MEASURED_CORES / max(1, min(cores, 8))


def describe(seconds: dict[str, float]) -> str:
    """One line: the total and each stage's share."""
    parts = ", ".join(f"{k} ~{_human(v)}" for k, v in seconds.items() if v >= 0.5)
    return f"estimated training time ~{_human(sum(seconds.values()))} ({parts}; early stopping decides)"


def _human(s: float) -> str:
    return f"{s:.0f} s" if s < 90 else f"{s / 60:.0f} min" if s < 5400 else f"{s / 3600:.1f} h"
