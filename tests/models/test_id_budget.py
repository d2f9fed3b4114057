"""The ID model's step budget (issue 40): an epoch of capped steps grows the batch with the data instead of the
number of graph propagations, leaves a small log's training as it was, and scales the learning rate as set."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from coldproxy.config import TrainSettings
from models.idmodel import id_batch_and_lr, train_id_model
from models.split import cold_start_split

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from train_scale import latent_log  # noqa: E402


def test_the_batch_grows_with_the_data_only_past_the_step_budget():
    s = TrainSettings(id_batch=1024, id_lr=5e-3, id_steps_per_epoch=48, id_lr_batch_power=0.0)
    assert id_batch_and_lr(30_804, s) == (1024, 5e-3)  # MovieLens-posters' training positives: as today
    assert id_batch_and_lr(192_461, s) == (4010, 5e-3)
    batch, lr = id_batch_and_lr(1_000_000, s.model_copy(update={"id_lr_batch_power": 0.5}))
    assert batch == 20834 and lr == pytest.approx(5e-3 * (20834 / 1024) ** 0.5)
    assert id_batch_and_lr(10**7, s.model_copy(update={"id_steps_per_epoch": 0})) == (1024, 5e-3)  # uncapped


def test_a_capped_training_takes_the_budgets_batch_and_reports_its_cost():
    ds = latent_log(6000, seed=3)
    assert ds.n_users == 120 and len(ds.users) == 6000 and ds.users.max() == 119
    split = cold_start_split(ds, 0)
    s = TrainSettings(id_steps_per_epoch=2, id_epochs=3, eval_every=1, seed=0)
    _, item_emb, log = train_id_model(ds.n_users, ds.n_items, split, s, progress=False)
    assert log["batch"] == -(-len(split.train) // 2) and log["epochs_run"] == 3 and log["train_s"] > 0
    assert [h["epoch"] for h in log["history"]] == [1, 2, 3] and item_emb.shape == (ds.n_items, s.dim)


def test_the_csr_propagation_gives_the_coo_products_embeddings_and_gradients():
    """LightGCN's CSR propagation with its symmetric backward (issue 40) is the COO product autograd would take."""
    import numpy as np
    import torch

    from models.idmodel import LightGCN

    ds = latent_log(3000, seed=1)
    out = {}
    for csr in (False, True):
        torch.manual_seed(0)
        model = LightGCN(ds.n_users, ds.n_items, 8, ds.users, ds.items, 3, csr=csr)
        users, items = model.embeddings()
        (users[:7].pow(2).sum() + (items[3:11] * items[:8]).sum()).backward()
        out[csr] = (users.detach(), items.detach(), model.user.weight.grad, model.item.weight.grad)
    assert out[True][3].abs().sum() > 0  # the gradient reached the items through the graph
    for coo, csr in zip(out[False], out[True]):
        np.testing.assert_allclose(csr.numpy(), coo.numpy(), rtol=1e-5, atol=1e-6)
