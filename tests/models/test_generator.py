"""The proxy generator's parts on small hand-made inputs: top-k routing, balance losses, masked
fusion, PAL, layer grouping, the ranking losses; LightGCN's graph normalisation."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from models.features import Features
from models.idmodel import normalised_adjacency
from models.items.generator import GeneratorConfig, MoEAdapter, ProxyGenerator, kl_to_uniform, layer_groups, pal_loss
from models.items.proxy_training import ranking_loss, tensors
from tests.models.random_features import tiny_split_and_features


@pytest.mark.parametrize(
    "experts, k, kind", [(4, 2, "linear"), (6, 3, "whitening"), (8, 4, "linear"), (4, 1, "linear")]
)
def test_top_k_gating_selects_exactly_k_experts_and_gradients_flow(experts, k, kind):
    torch.manual_seed(0)
    moe = MoEAdapter(10, 5, experts, k, kind)
    x = torch.randn(32, 10)
    sparse, probs = moe.gates(x)
    assert ((sparse > 0).sum(1) == k).all()
    torch.testing.assert_close(probs.sum(1), torch.ones(32))
    torch.testing.assert_close(sparse[sparse > 0], probs[sparse > 0])  # the kept gates are the router's probabilities
    chosen = sparse > 0  # the k largest router logits
    top = moe.router(x).topk(k, dim=-1).indices
    assert chosen.gather(1, top).all()
    z, _ = moe(x)
    z.pow(2).sum().backward()
    assert moe.router.weight.grad.abs().sum() > 0  # through the gate values of the chosen experts
    used = chosen.any(0)
    per_expert = moe.weight.grad.abs().sum(dim=(1, 2))
    assert (per_expert[used] > 0).all() and (per_expert[~used] == 0).all()


def test_balance_losses_zero_when_uniform_positive_otherwise():
    assert float(kl_to_uniform(torch.full((4,), 0.25))) == pytest.approx(0.0, abs=1e-7)
    assert float(kl_to_uniform(torch.tensor([0.5, 0.5]))) == pytest.approx(0.0, abs=1e-7)
    skew = torch.tensor([0.7, 0.1, 0.1, 0.1])
    assert float(kl_to_uniform(skew)) == pytest.approx(float((skew * (skew * 4).log()).sum()), rel=1e-6)
    assert float(kl_to_uniform(torch.tensor([0.9, 0.1]))) > 0


def test_pal_matches_a_hand_computed_case():
    h = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    e = torch.tensor([[3.0, 0.0], [1.0, 1.0]])
    tau = 0.5
    hn, en = F.normalize(h, dim=-1), F.normalize(e, dim=-1)
    s = hn @ en.T / tau  # [[1/0.5, 0.7071/0.5], [0, 0.7071/0.5]]
    by_hand = -0.5 * (
        np.log(np.exp(2.0) / (np.exp(2.0) + np.exp(np.sqrt(0.5) / tau)))
        + np.log(np.exp(np.sqrt(0.5) / tau) / (np.exp(0.0) + np.exp(np.sqrt(0.5) / tau)))
    )
    assert float(s[0, 0]) == pytest.approx(2.0)
    assert float(pal_loss(h, e, tau)) == pytest.approx(by_hand, rel=1e-6)


def small_generator(**kw) -> ProxyGenerator:
    torch.manual_seed(0)
    cfg = GeneratorConfig(
        text_dim=6, image_dim=8, n_text_layers=4, image_stage_dim=5, out_dim=3, hidden=7, text_groups=[0, 0, 1, 2], **kw
    )
    return ProxyGenerator(cfg).eval()


def inputs(n=5, mask=(1, 1)):
    g = torch.Generator().manual_seed(1)
    return (
        torch.randn(n, 6, generator=g),
        torch.randn(n, 8, generator=g),
        torch.randn(n, 4, 6, generator=g),
        torch.randn(n, 5, generator=g),
        torch.tensor([mask] * n, dtype=torch.float32),
    )


@pytest.mark.parametrize("mask", [(1, 0), (0, 1)])
def test_masked_modality_gets_zero_fusion_weight_and_no_influence(mask):
    gen = small_generator()
    x = inputs(mask=mask)
    out = gen(*x)
    missing = mask.index(0)
    assert (out["alpha"][:, missing] == 0).all() and torch.allclose(out["alpha"].sum(1), torch.ones(5))
    # whatever the missing modality's features are, the proxy does not change
    noisy = list(x)
    if missing == 0:
        noisy[0], noisy[2] = noisy[0] * 100, noisy[2] - 50
    else:
        noisy[1], noisy[3] = noisy[1] * 100, noisy[3] - 50
    torch.testing.assert_close(gen(*noisy)["proxy"], out["proxy"])


def test_mean_fusion_ablation_and_losses_on_a_batch():
    gen = small_generator(fusion="mean")
    out = gen(*inputs())
    torch.testing.assert_close(out["alpha"], torch.full((5, 2), 0.5))
    losses = gen.aux_losses(out, torch.randn(5, 3), 0.1)
    assert float(losses["fusion"]) == 0.0 and float(losses["adapter"]) >= 0 and float(losses["align"]) > 0
    assert torch.isfinite(losses["pal"])


def test_coarse_proxy_is_unit_norm_and_fine_stage_adds_a_gated_residual():
    full, coarse = small_generator(), small_generator(fine=False)
    out_f, out_c = full(*inputs()), coarse(*inputs())
    torch.testing.assert_close(out_c["coarse"].norm(dim=1), torch.ones(5))
    torch.testing.assert_close(out_c["proxy"], coarse.w_c(out_c["coarse"]))
    assert not torch.allclose(out_f["proxy"], full.w_c(out_f["coarse"]))


def test_layer_groups_by_kmeans_are_ordered_shallow_to_deep():
    rng = np.random.default_rng(0)
    base = [rng.normal(size=(300, 16)) for _ in range(3)]
    # 7 layers in three families: layers 0-1 alike, 2-4 alike, 5-6 alike
    layers = np.stack(
        [
            base[0],
            base[0] + 0.05 * rng.normal(size=(300, 16)),
            base[1],
            base[1] * 1.1,
            base[1] + 0.05,
            base[2],
            base[2] * 0.9,
        ],
        axis=1,
    ).astype(np.float32)
    assert layer_groups(layers, 3) == [0, 0, 1, 1, 1, 2, 2]


def test_lightgcn_adjacency_is_symmetric_normalised():
    adj = normalised_adjacency(2, 3, np.array([0, 0, 1]), np.array([0, 1, 1])).to_dense().numpy()
    assert np.allclose(adj, adj.T)
    deg = np.array([2, 1, 1, 2, 0])  # users 0, 1; items 0, 1, 2 (item 2 has no edge)
    assert adj[0, 2 + 1] == pytest.approx(1 / np.sqrt(deg[0] * deg[3]))
    assert (adj[4] == 0).all()


@pytest.mark.parametrize("n", [1, 3])
def test_ranking_losses_pair_each_click_with_its_own_negatives(n):
    torch.manual_seed(0)
    users, pos, neg = torch.randn(5, 4), torch.randn(5, 4), torch.randn(5 * n, 4)
    s_pos = (users * pos).sum(-1)
    s_neg = torch.stack([(users * neg[k * 5 : (k + 1) * 5]).sum(-1) for k in range(n)], 1)  # row r's k-th at r + 5k
    expected_bpr = -F.logsigmoid(s_pos[:, None] - s_neg).mean()
    every = users @ neg.T  # the softmax shares the batch's negatives: each click against all 5n of them
    expected_softmax = (torch.logsumexp(torch.cat([s_pos[:, None], every], 1), 1) - s_pos).mean()
    torch.testing.assert_close(ranking_loss(users, pos, neg, "bpr"), expected_bpr)
    torch.testing.assert_close(ranking_loss(users, pos, neg, "softmax"), expected_softmax)
    one = ranking_loss(users[:1], pos[:1], neg[:1], "softmax")  # one click, one negative: softmax over two is BPR
    torch.testing.assert_close(one, -F.logsigmoid(s_pos[:1] - s_neg[:1, 0]).mean())


def test_the_weight_average_is_what_is_validated_and_returned_and_a_vanishing_decay_is_the_plain_run():
    from coldproxy.config import TrainSettings
    from models.evaluate import validation_cold_ndcg
    from models.items.proxy_training import ProxyMLP, predict, train_proxy

    split, feats, U, I = tiny_split_and_features()

    def run(decay: float):
        s = TrainSettings(proxy_ema_decay=decay, proxy_epochs=3, patience=10, proxy_batch=32, proxy_lr=1e-2)
        model, log = train_proxy(lambda: ProxyMLP(8, 6, 4, hidden=16), feats, split, U, I, s, progress=False)
        out = predict(model, feats, np.arange(60))
        probe = np.zeros_like(I)
        probe[split.val_items] = out[split.val_items]
        # validated = returned
        assert log["best_val_cold_ndcg@20"] == pytest.approx(validation_cold_ndcg(U, probe, split))
        return out

    plain, vanishing, averaged = run(0.0), run(1e-12), run(0.9)
    np.testing.assert_allclose(vanishing, plain, atol=1e-5)  # the average of the last step alone is that step
    assert np.abs(averaged - plain).max() > 1e-3  # a real average is not the last step's weights
    with pytest.raises(ValueError):
        TrainSettings(proxy_ema_decay=1.0)


def test_an_image_only_generator_on_items_without_pictures_has_tensor_losses():
    """A batch where the generator's only modality is absent everywhere (``bench/quality.py``'s "image only" row on
    a dataset without pictures) gives tensor losses, not a bare 0 that training cannot detach."""
    gen = small_generator(modalities=(0, 1))
    out = gen(*inputs(mask=(1, 0)))
    losses = gen.aux_losses(out, torch.randn(5, 3), 0.1)
    assert all(isinstance(v, torch.Tensor) for v in losses.values()) and float(losses["adapter"].detach()) == 0.0


def test_training_inputs_precompute_exactly_what_the_forward_computes_first():
    """Training feeds each item's standardised features and grouped text layers, computed once (issue 40), gathered
    as ``tensors`` does; the proxy and its gradients are the same as from the raw features, bit for bit."""
    gen = small_generator()
    text, image, layers, stages, _ = inputs(n=6)
    has_text, has_image = np.array([1, 1, 0, 1, 1, 1], bool), np.array([1, 0, 1, 1, 1, 1], bool)  # one of each missing
    feats = Features(text.numpy(), image.numpy(), layers.numpy(), stages.numpy(), has_text, has_image)
    gen.fit_normalisation(feats)  # statistics that move every input
    prepared = gen.training_inputs(feats, batch=4)  # the groups in two chunks
    assert prepared["text_layers"].shape == (6, gen.group_avg.shape[0], 6)
    rows = np.array([5, 0, 3, 3, 1, 2, 4])
    raw = gen(*tensors(feats, rows))
    pre = gen(*tensors(feats, rows, prepared=prepared), prepared=True)
    assert torch.equal(raw["proxy"], pre["proxy"])
    grads = []
    for out in (raw, pre):
        gen.zero_grad()
        out["proxy"].sum().backward(retain_graph=True)
        grads.append(gen.adaptor[0].weight.grad.clone())
    assert torch.equal(*grads)


@pytest.mark.parametrize("modalities", [(1, 0), (0, 1)])
def test_a_single_modality_generator_trains_on_the_same_outputs_without_its_unused_modality(modalities):
    """In training a single-modality generator skips the modality it never uses (issue 40): its proxy and every
    gradient are what the full graph (eval mode, as exported) gives."""
    gen = small_generator(modalities=modalities, dropout=0.0)
    x = inputs(n=7)
    out = {}
    for mode in ("train", "eval"):
        getattr(gen, mode)()
        gen.zero_grad()
        o = gen(*x)
        (o["proxy"].pow(2).sum() + o["coarse"].sum() + sum(p.sum() for p in o["router"])).backward()
        out[mode] = (o["proxy"].detach(), {n: p.grad.clone() for n, p in gen.named_parameters() if p.grad is not None})
    torch.testing.assert_close(out["train"][0], out["eval"][0])
    assert out["train"][1].keys() == out["eval"][1].keys()
    rows = []
    unused = gen.adapters[modalities.index(0)]
    unused.register_forward_hook(lambda module, args, result: rows.append(len(args[0])))
    gen.train()(*x)
    gen.eval()(*x)
    assert rows == [1, 7]  # in training the unused adapter ran on one row
    for name, grad in out["eval"][1].items():
        torch.testing.assert_close(out["train"][1][name], grad, rtol=1e-5, atol=1e-6, msg=name)
