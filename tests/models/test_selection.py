"""Validation choices in training (issue 21): a run whose served choice scores below a candidate that the decision
floor did not turn down is refused, a single-modality generator serves only the items that have its modality, and
the fused generator's fusion temperature is the validation-best."""

import numpy as np
import pytest
import torch

from models.items.generator import GeneratorConfig, ProxyGenerator, RoutedGenerator
from models.items.train import check_selection
from tests.models.random_features import random_features


def test_a_served_choice_below_a_candidate_on_validation_fails_the_run_loudly():
    check_selection({"served": "gate", "validation": {"gate": 0.31, "anchor": 0.30, "generator:text": 0.31}})
    with pytest.raises(RuntimeError, match="below a candidate"):
        check_selection({"served": "gate", "validation": {"gate": 0.30, "anchor": 0.31}})
    # below a costlier candidate whose gain the decision floor turned down (issue 57): the simpler one serves
    turned_down = {"gate": {"against": "proxy", "adopt": False, "mean_gain": 0.002, "floor": 0.004}}
    check_selection({"served": "proxy", "validation": {"proxy": 0.30, "gate": 0.302}, "margins": turned_down})
    with pytest.raises(RuntimeError, match="below a candidate"):  # one the floor let through must be served
        adopted = {"gate": turned_down["gate"] | {"adopt": True}}
        check_selection({"served": "proxy", "validation": {"proxy": 0.30, "gate": 0.31}, "margins": adopted})


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


def test_a_routed_single_modality_generator_falls_back_to_the_fused_one_where_its_modality_is_absent():
    text_only, fused = _generator((1, 0), 0), _generator((1, 1), 1)
    routed = RoutedGenerator(text_only, fused).eval()
    rng = np.random.default_rng(0)
    x = [torch.from_numpy(rng.standard_normal(s).astype(np.float32)) for s in ((3, 8), (3, 6), (3, 3, 8), (3, 5))]
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0], [0.0, 1.0]])
    with torch.no_grad():
        out, a, b = routed(*x, mask), text_only(*x, mask), fused(*x, mask)
    torch.testing.assert_close(out["proxy"][:2], a["proxy"][:2])  # text present: the text-only generator
    torch.testing.assert_close(out["proxy"][2:], b["proxy"][2:])  # image only: the fused generator
    torch.testing.assert_close(out["alpha"][0], torch.tensor([1.0, 0.0]))
    with pytest.raises(ValueError):
        RoutedGenerator(fused, fused)


def test_a_routed_generator_round_trips_through_its_checkpoint_and_exports_as_one_graph(tmp_path):
    from export.graphs import export_proxy, parity
    from models.items.checkpoint import generator_checkpoint, load_proxy

    routed = RoutedGenerator(_generator((0, 1), 2), _generator((1, 1), 3)).eval()
    torch.save(generator_checkpoint(routed), tmp_path / "proxy.pt")
    loaded = load_proxy(tmp_path)
    assert isinstance(loaded, RoutedGenerator) and loaded.modality == 1
    rng = np.random.default_rng(1)
    feeds = {
        "text_features": rng.standard_normal((4, 8)),
        "image_features": rng.standard_normal((4, 6)),
        "text_layers": rng.standard_normal((4, 3, 8)),
        "image_stages": rng.standard_normal((4, 5)),
        "modality_mask": np.array([[1, 1], [1, 0], [0, 1], [1, 1]]),
    }
    feeds = {k: v.astype(np.float32) for k, v in feeds.items()}
    with torch.no_grad():
        a = routed(*map(torch.from_numpy, feeds.values()))["proxy"]
        b = loaded(*map(torch.from_numpy, feeds.values()))["proxy"]
    torch.testing.assert_close(a, b)
    path = export_proxy(loaded, tmp_path / "proxy.onnx")
    assert parity(loaded.serving(), path, feeds) < 1e-5


def test_the_fusion_temperature_is_chosen_by_the_validation_score_and_exported_with_the_generator(tmp_path):
    from export.graphs import export_proxy, parity
    from models.items.candidates import choose_fusion_temperature
    from models.items.checkpoint import generator_checkpoint, load_proxy
    from models.items.proxy_training import predict

    feats, items, gen = random_features(16, 0), np.arange(16), _generator((1, 1), 4)
    gen.cfg.fusion_temperature = 4.0
    hot = predict(gen, feats, items, key="alpha")
    target = predict(gen, feats, items)
    assert np.abs(hot - 0.5).max() < np.abs(predict(_generator((1, 1), 4), feats, items, key="alpha") - 0.5).max()
    # a score that prefers the proxies of temperature 4 chooses it, one that cannot tell them apart keeps 1
    out = choose_fusion_temperature(gen, feats, items, lambda v: -float(np.abs(v - target).sum()), [0.5, 2.0, 4.0])
    assert out["chosen"] == 4.0 == gen.cfg.fusion_temperature and set(out["validation"]) == {0.5, 1.0, 2.0, 4.0}
    flat = choose_fusion_temperature(_generator((1, 1), 4), feats, items, lambda v: 0.3, [0.5, 2.0])
    assert flat["chosen"] == 1.0
    text_only = _generator((1, 0), 5)
    assert choose_fusion_temperature(text_only, feats, items, lambda v: 0.3, [0.5]) == {"chosen": 1.0, "validation": {}}
    # the chosen temperature travels in the checkpoint and is baked into the exported graph
    torch.save(generator_checkpoint(gen), tmp_path / "proxy.pt")
    loaded = load_proxy(tmp_path)
    assert loaded.cfg.fusion_temperature == 4.0
    np.testing.assert_allclose(predict(loaded, feats, items), target, atol=1e-6)
    feeds = {
        "text_features": feats.text,
        "image_features": feats.image,
        "text_layers": feats.text_layers,
        "image_stages": feats.image_stages,
        "modality_mask": feats.mask,
    }
    assert parity(loaded.serving(), export_proxy(loaded, tmp_path / "proxy.onnx"), feeds) < 1e-5
