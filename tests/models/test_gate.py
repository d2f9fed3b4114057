"""The cold-aware gate over {ID, proxy, diffusion, anchor}: masking, normalisation, and what training learns."""

from types import SimpleNamespace

import numpy as np
import torch

from coldproxy.experts import cold_features
from coldproxy.graph_io import GATE_INPUTS
from export.graphs import export_gate, parity
from models.data import Interactions
from models.gate import ColdAwareGate, train_gate
from models.split import ColdStartSplit


def test_weights_sum_to_one_and_an_absent_id_embedding_gets_zero_weight():
    torch.manual_seed(0)
    gate = ColdAwareGate()
    torch.nn.init.normal_(gate.lin.weight, std=3.0)
    feats = torch.from_numpy(cold_features(np.array([0, 3, 200]), np.array([[1, 1], [1, 0], [0, 1]], np.float32)))
    for available in (torch.ones(3, 4), torch.tensor([[0.0, 1, 1, 1]] * 3)):
        w = gate.weights(feats, available)
        torch.testing.assert_close(w.sum(-1), torch.ones(3))
        assert (w[available == 0] == 0).all() and (w[available == 1] > 0).all()


def _synthetic(seed=0, d=8, n_users=300, n_warm=240, n_val=30):
    """Items whose ID embedding is accurate when they had many training interactions and noisy when
    they had one; both proxies are equally noisy content estimates."""
    rng = np.random.default_rng(seed)
    n = n_warm + 2 * n_val
    true = rng.standard_normal((n, d)).astype(np.float32)
    users = rng.standard_normal((n_users, d)).astype(np.float32)
    many = np.zeros(n, bool)
    many[: n_warm // 2] = True
    counts = np.where(many, 50, 1)[:n_warm]
    train = Interactions(rng.integers(0, n_users, counts.sum()), np.repeat(np.arange(n_warm), counts))
    id_emb = np.zeros_like(true)
    id_emb[:n_warm] = true[:n_warm] + np.where(many[:n_warm, None], 0.1, 2.0) * rng.standard_normal((n_warm, d))
    proxy = true + 0.8 * rng.standard_normal(true.shape)
    diffusion = true + 0.8 * rng.standard_normal(true.shape)

    def top(items, k):
        s = users @ true[items].T
        pick = np.argsort(-s, axis=1)[:, :k]
        return Interactions(np.repeat(np.arange(n_users), k), items[pick].ravel())

    warm, val = np.arange(n_warm), np.arange(n_warm, n_warm + n_val)
    split = ColdStartSplit(
        warm,
        val,
        np.arange(n_warm + n_val, n),
        train,
        top(warm, 5),
        Interactions(np.zeros(0, int), np.zeros(0, int)),
        top(val, 3),
        top(np.arange(n_warm + n_val, n), 3),
        seed,
    )
    available = np.ones((n, 3), np.float32)
    available[n_warm:, 0] = 0.0
    experts = np.stack([id_emb, proxy, diffusion], axis=1).astype(np.float32)
    full_counts = np.bincount(train.items, minlength=n)
    mask = np.ones((n, 2), np.float32)
    return experts, available, cold_features(full_counts, mask), users, split, many


def test_training_makes_a_well_trained_warm_item_lean_on_its_id_embedding():
    experts, available, feats, users, split, many = _synthetic()
    s = SimpleNamespace(
        seed=0,
        gate_lr=0.05,
        gate_batch=256,
        gate_aug_ratio=0.5,
        gate_aug_alpha=0.4,
        gate_epochs=40,
        patience=8,
        gate_steps_per_epoch=0,
    )
    gate, log = train_gate(experts, available, feats, users, split, s, progress=False)
    with torch.no_grad():
        w = gate.weights(torch.from_numpy(feats), torch.from_numpy(available)).numpy()
    warm = split.warm_items
    heavy, light = w[warm[many[warm]], 0].mean(), w[warm[~many[warm]], 0].mean()
    assert heavy > 0.5, (heavy, light)  # many interactions: mostly the ID embedding
    assert heavy > light + 0.2, (heavy, light)  # one interaction: mostly content
    assert log["epochs_run"] >= 1


def test_onnx_gate_graph_matches_torch_with_and_without_the_id_expert(tmp_path):
    torch.manual_seed(0)
    gate = ColdAwareGate()
    torch.nn.init.normal_(gate.lin.weight)
    path = export_gate(gate, 16, tmp_path / "gate.onnx")
    rng = np.random.default_rng(0)
    feeds = dict(
        zip(
            GATE_INPUTS,
            [
                cold_features(rng.integers(0, 100, 6), np.ones((6, 2), np.float32)),
                np.ones((6, 4), np.float32),
                *(rng.standard_normal((6, 16)).astype(np.float32) for _ in range(4)),
            ],
        )
    )
    assert parity(gate, path, feeds) < 1e-5
    feeds["expert_available"][:, 0] = 0.0
    assert parity(gate, path, feeds) < 1e-5


def test_served_choice_gives_a_new_item_the_chosen_expert_and_a_warmed_item_the_learned_mix(tmp_path):
    from models.items.experts import ServedGate

    torch.manual_seed(0)
    gate = ColdAwareGate()
    torch.nn.init.normal_(gate.lin.weight)
    rng = np.random.default_rng(1)
    experts = [torch.from_numpy(rng.standard_normal((4, 16)).astype(np.float32)) for _ in range(4)]
    feats = torch.from_numpy(cold_features(np.array([0, 0, 5, 9]), np.ones((4, 2), np.float32)))
    available = torch.tensor([[0.0, 1, 1, 1], [0.0, 1, 1, 1], [1.0, 1, 1, 1], [1.0, 1, 1, 1]])
    served = ServedGate(gate, "anchor").eval()
    with torch.no_grad():
        emb, w = served(feats, available, *experts)
        learned, lw = gate(feats, available, *experts)
    torch.testing.assert_close(emb[:2], experts[3][:2])  # new items: the anchor alone
    torch.testing.assert_close(emb[2:], learned[2:])  # with an ID embedding: the learned mix
    assert (w[:2, 3] == 1).all() and not torch.equal(lw[:2], w[:2])
    path = export_gate(served, 16, tmp_path / "served.onnx")
    feeds = dict(zip(GATE_INPUTS, [feats.numpy(), available.numpy(), *(e.numpy() for e in experts)]))
    assert parity(served, path, feeds) < 1e-5
