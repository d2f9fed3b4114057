"""The decision rule with a floor (issue 57): a consistent gain is adopted, noise is not, and under no real
difference the rule adopts about 1 - confidence of the time, where the rule before it adopted 42%."""

import numpy as np
import pytest

from models.decision import bootstrap_clears, clears


def test_a_gain_on_every_seed_past_the_noise_is_adopted_and_a_mixed_one_is_not():
    assert clears([0.30, 0.31, 0.32], [0.34, 0.35, 0.355])["adopt"]
    mixed = clears([0.3110, 0.3416, 0.3460], [0.3196, 0.3199, 0.3175])  # select_modalities off vs on, decide runs
    assert not mixed["adopt"] and mixed["floor"] > 0.03
    small = clears([0.300, 0.300, 0.300], [0.301, 0.302, 0.301])  # the same gain every seed, under 1% of the mean
    assert not small["adopt"] and small["floor"] == pytest.approx(0.003)
    assert not clears([0.3, 0.3], [0.5, 0.5])["adopt"]  # two pairs: the rule asks three
    with pytest.raises(ValueError):
        clears([0.3, 0.3, 0.3], [0.3, 0.3])


def test_under_no_real_difference_the_rule_adopts_rarely_and_the_old_one_often():
    rng = np.random.default_rng(0)
    base = 0.3 + 0.02 * rng.standard_normal((4000, 3))  # seed-to-seed spread shared by both options
    other = base + 0.01 * rng.standard_normal((4000, 3))  # no real gain: only the pair's own noise
    new = np.mean([clears(b, o)["adopt"] for b, o in zip(base, other)])
    d = other - base
    old = np.mean((d.mean(1) > 0) & ((d > 0).sum(1) >= 2))
    assert new < 0.06 and old > 0.4


def test_the_bootstrap_floor_over_users_adopts_a_real_gain_and_rarely_noise():
    rng = np.random.default_rng(1)
    users = rng.uniform(0, 1, 400)
    assert bootstrap_clears(users, users + 0.05 + 0.05 * rng.standard_normal(400))["adopt"]
    noise = [bootstrap_clears(users, users + 0.1 * rng.standard_normal(400), seed=k)["adopt"] for k in range(200)]
    assert np.mean(noise) < 0.1
    again = bootstrap_clears(users, users + 0.004)
    assert again == bootstrap_clears(users, users + 0.004) and not again["adopt"]  # reproducible; under 1%


def test_the_bootstrap_draws_in_bounded_chunks_and_answers_as_one_draw_would(monkeypatch):
    """Many validation users must not make the check itself allocate resamples x users at once: the draws come in
    chunks of at most BOOTSTRAP_CELLS indices, from the same stream, so the answer is the same."""
    import models.decision as decision

    rng = np.random.default_rng(2)
    users = rng.uniform(0, 1, 3000)
    other = users + 0.01 + 0.2 * rng.standard_normal(3000)
    whole = bootstrap_clears(users, other)
    monkeypatch.setattr(decision, "BOOTSTRAP_CELLS", 3000 * 7)  # 7 draws a chunk, the last one shorter
    assert bootstrap_clears(users, other) == whole
    many = bootstrap_clears(np.zeros(200_000), np.full(200_000, 0.5), resamples=50)  # 10M indices, 32 MiB chunks
    assert many["adopt"] and many["users"] == 200_000
