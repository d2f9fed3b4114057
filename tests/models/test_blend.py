"""Validation-chosen blends (issue 21): a blend never scores below any of its candidates on validation,
is a single candidate where that one is best alone, and a blended generator serves and exports as it
computed in training."""

import numpy as np
import pytest
import torch

from models.items.blend import describe, greedy_blend
from models.items.generator import BlendedGenerator, GeneratorConfig, ProxyGenerator, RoutedGenerator


def _score_against(target: np.ndarray):
    return lambda x: -float(np.square(x - target).mean())


def test_a_blend_averages_two_halves_of_the_truth_and_scores_above_each():
    rng = np.random.default_rng(0)
    truth = rng.standard_normal((50, 8))
    noise = rng.standard_normal((50, 8))
    outputs = {"a": truth + noise, "b": truth - noise, "c": rng.standard_normal((50, 8))}
    weights, score, singles = greedy_blend(outputs, _score_against(truth), rounds=10, prefer="c")
    assert weights == {"a": 0.5, "b": 0.5}
    assert score > max(singles.values()) and score == pytest.approx(0.0, abs=1e-12)
    assert describe(weights) in ("a 0.50 + b 0.50", "b 0.50 + a 0.50")


def test_a_blend_is_the_single_best_where_averaging_only_hurts_and_ties_go_to_the_preferred():
    rng = np.random.default_rng(1)
    truth = rng.standard_normal((40, 4))
    outputs = {"good": truth.copy(), "bad": -truth}
    weights, score, singles = greedy_blend(outputs, _score_against(truth), rounds=10, prefer="bad")
    assert weights == {"good": 1.0} and score == singles["good"] == 0.0 and describe(weights) == "good"
    same = {"x": truth.copy(), "y": truth.copy()}
    assert greedy_blend(same, _score_against(truth), rounds=5, prefer="y")[0] == {"y": 1.0}
    assert greedy_blend({"good": truth, "bad": -truth}, _score_against(-truth), rounds=1, prefer="good")[0] == {
        "bad": 1.0
    }
    with pytest.raises(ValueError):
        greedy_blend(outputs, _score_against(truth), rounds=0, prefer="good")


def _generator(modalities, seed):
    torch.manual_seed(seed)
    return ProxyGenerator(
        GeneratorConfig(
            text_dim=8,
            image_dim=6,
            n_text_layers=3,
            image_stage_dim=5,
            out_dim=4,
            hidden=8,
            experts=2,
            modalities=modalities,
        )
    ).eval()


def _feeds(seed: int) -> dict[str, np.ndarray]:
    """A proxy graph's inputs for 4 items: both modalities, text only, image only, both."""
    rng = np.random.default_rng(seed)
    feeds = {
        "text_features": rng.standard_normal((4, 8)),
        "image_features": rng.standard_normal((4, 6)),
        "text_layers": rng.standard_normal((4, 3, 8)),
        "image_stages": rng.standard_normal((4, 5)),
        "modality_mask": np.array([[1, 1], [1, 0], [0, 1], [1, 1]]),
    }
    return {k: v.astype(np.float32) for k, v in feeds.items()}


def test_a_blended_generator_is_the_weighted_mix_of_its_routed_members_round_trips_and_exports_as_one_graph(tmp_path):
    from export.graphs import export_proxy, parity
    from models.items.checkpoint import generator_checkpoint, load_proxy

    fused, text, image = _generator((1, 1), 0), _generator((1, 0), 1), _generator((0, 1), 2)
    blend = BlendedGenerator(fused, {"text": text, "image": image}, {"both": 0.5, "text": 0.3, "image": 0.2}).eval()
    feeds = _feeds(3)
    x = [torch.from_numpy(v) for v in feeds.values()]
    with torch.no_grad():
        got = blend(*x)["proxy"]
        want = (
            0.5 * fused(*x)["proxy"]
            + 0.3 * RoutedGenerator(text, fused)(*x)["proxy"]
            + 0.2 * RoutedGenerator(image, fused)(*x)["proxy"]
        )
    torch.testing.assert_close(got, want)
    torch.save(generator_checkpoint(blend), tmp_path / "proxy.pt")
    loaded = load_proxy(tmp_path)
    assert isinstance(loaded, BlendedGenerator) and loaded.weights == blend.weights
    with torch.no_grad():
        torch.testing.assert_close(loaded(*x)["proxy"], got)
    path = export_proxy(loaded, tmp_path / "proxy.onnx")
    assert parity(loaded.serving(), path, feeds) < 1e-5
    from export.package import generator_name  # what the manifest calls it

    assert generator_name(loaded).endswith("blend of fused 0.50 + text-only 0.30 + image-only 0.20")
    with pytest.raises(ValueError):
        BlendedGenerator(fused, {"text": text}, {"text": 1.0})


def test_a_fused_generator_from_another_seed_joins_a_blend_unrouted_and_exports_with_it(tmp_path):
    from export.graphs import export_proxy, parity
    from export.package import generator_name
    from models.items.checkpoint import generator_checkpoint, load_proxy

    fused, fused2, text = _generator((1, 1), 0), _generator((1, 1), 7), _generator((1, 0), 1)
    blend = BlendedGenerator(fused, {"both#2": fused2, "text": text}, {"both#2": 0.6, "text": 0.4}).eval()
    feeds = _feeds(4)
    x = [torch.from_numpy(v) for v in feeds.values()]
    with torch.no_grad():  # the first fused generator weighs 0 and only serves the text-only member's image-only items
        want = 0.6 * fused2(*x)["proxy"] + 0.4 * RoutedGenerator(text, fused)(*x)["proxy"]
        torch.testing.assert_close(blend(*x)["proxy"], want)
    torch.save(generator_checkpoint(blend), tmp_path / "proxy.pt")
    loaded = load_proxy(tmp_path)
    with torch.no_grad():
        torch.testing.assert_close(loaded(*x)["proxy"], want)
    assert parity(loaded.serving(), export_proxy(loaded, tmp_path / "proxy.onnx"), feeds) < 1e-5
    assert generator_name(loaded).endswith("blend of fused #2 0.60 + text-only 0.40")
