"""Youshu loader (counts, scenario splits as given), the bundle model's hierarchical gate and its cold calibration."""

from pathlib import Path

import numpy as np
import pytest
import torch

from coldproxy.bundle_package import ColdCalibration, with_columns
from coldproxy.config import DEFAULT_DATASETS, BundleSettings
from models.bundles.backbone import DualView, evaluate, mean_matrix, train_prior
from models.bundles.calibration import (
    calibrate_cold,
    placement_offsets,
    placement_pool,
    placement_tops,
    served_users,
    served_vectors,
)
from models.bundles.data import load_youshu
from models.bundles.model import HierarchicalGate, cold_aware_features
from models.bundles.train import gate_variant, train_bundle_model

YOUSHU = Path(DEFAULT_DATASETS) / "youshu"


@pytest.fixture(scope="module")
def cold():
    return load_youshu(YOUSHU, "cold")


def test_counts_match_the_size_file(cold):
    users, bundles, items = (int(x) for x in (YOUSHU / "Youshu_data_size.txt").read_text().split())
    assert (cold.n_users, cold.n_bundles, cold.n_items) == (users, bundles, items) == (8039, 4771, 32770)
    for part, name in ((cold.train, "train"), (cold.tune, "tune"), (cold.test, "test")):
        lines = (YOUSHU / "cold" / f"user_bundle_{name}.txt").read_text().splitlines()
        assert len(part) == len(lines)
    assert len(cold.bundle_item) == len((YOUSHU / "bundle_item.txt").read_text().splitlines())
    assert sum(len(m) for m in cold.members()) == len(cold.bundle_item)
    assert int((cold.item_counts() > 0).sum()) == 21034  # warm items, MoDiffE §5.1.3


def test_cold_test_bundles_never_appear_in_training(cold):
    train = set(cold.train.items.tolist())
    assert not train & set(cold.test.items.tolist())
    assert not train & set(cold.tune.items.tolist())
    warm = load_youshu(YOUSHU, "warm")  # in the warm scenario most test bundles do have training interactions
    seen = np.isin(np.unique(warm.test.items), warm.train.items)
    assert seen.mean() > 0.8


def test_unknown_scenario_is_refused():
    with pytest.raises(ValueError, match="scenario"):
        load_youshu(YOUSHU, "lukewarm")


def test_cold_aware_features_and_membership_mean(cold):
    aB, aI = cold_aware_features(cold, cold.bundle_counts())
    test_bundles = np.unique(cold.test.items)
    assert (aB[test_bundles] == 0).all() and (aB[cold.warm_bundles] > 0).all()
    assert ((aI[:, 0] >= 0) & (aI[:, 0] <= 1 + 1e-5)).all()
    members = cold.members()
    b = int(test_bundles[0])
    expected = (cold.item_counts()[members[b]] > 0).mean()
    assert aI[b, 0] == pytest.approx(expected, rel=1e-6)
    agg = mean_matrix(cold.bundle_item, cold.n_bundles, cold.n_items)
    row = agg.to_dense()[b].numpy()
    assert row.sum() == pytest.approx(1.0, rel=1e-5) and set(np.flatnonzero(row)) == set(members[b].tolist())


def test_backbone_options_share_the_user_table_drop_edges_only_in_training_and_normalise_layers(cold):
    s = BundleSettings(
        shared_user_table=True, layer_combine="normalised_sum", edge_dropout=0.3, lightgcn_layers=1, dim=8
    )
    torch.manual_seed(0)
    model = DualView(cold, s)
    assert model.user_i is model.user_b and len(list(model.parameters())) == 3
    full = [g._nnz() for g in model.full]
    model.resample(np.random.default_rng(0), 0.3)
    dropped = [g._nnz() for g in model.training_graphs]
    for kept, total in zip(dropped, full):
        assert 0.6 * total < kept < 0.8 * total
    with torch.no_grad():
        served, trained = model.embeddings(), model.embeddings(training=True)
        uB, bB = served[0], served[1]
        # normalised sum with one layer: layer 0 plus a unit-norm propagated layer
        layer1 = torch.sparse.mm(model.full[0], torch.cat([model.user_b.weight, model.bundle.weight]))
        expected = torch.cat([model.user_b.weight, model.bundle.weight]) + torch.nn.functional.normalize(layer1, dim=1)
    assert torch.allclose(torch.cat([uB, bB]), expected, atol=1e-6)
    assert not torch.allclose(served[3], trained[3])  # training reads the edge-dropped graphs, serving the full ones
    separate = DualView(cold, BundleSettings(dim=8, shared_user_table=False))
    assert separate.user_i is not separate.user_b and len(list(separate.parameters())) == 4


def test_prior_xavier_init_weight_decay_and_fixed_epochs_where_tune_cannot_choose(cold):
    """Xavier tables are CrossCBR's small layer 0; Adam's weight decay reaches rows no loss touches (cold
    bundles); the cold scenario's prior trains its fixed epochs and keeps the last, whatever tune says."""
    xavier = DualView(cold, BundleSettings(init="xavier", dim=8))
    assert xavier.bundle.weight.std().item() == pytest.approx((2 / (cold.n_bundles + 8)) ** 0.5, rel=0.05)
    new = np.unique(cold.test.items)
    base = dict(
        init="xavier",
        dim=8,
        id_batch=16384,
        id_lr=1e-2,
        eval_every=1,
        patience=1,
        id_epochs=4,
        layer_combine="normalised_sum",
        prior_fixed_epochs={"cold": 3},
    )
    norms = {}
    for wd in (0.0, 1e-4):
        prior, log = train_prior(cold, BundleSettings(id_weight_decay=wd, **base), progress=False)
        norms[wd] = np.linalg.norm(prior.bB[new], axis=1).mean()
    assert norms[1e-4] < 0.5 * norms[0.0]  # without decay a never-trained row keeps its initial norm
    assert norms[0.0] == pytest.approx(
        np.linalg.norm(xavier.bundle.weight[new].detach().numpy(), axis=1).mean(), rel=0.1
    )
    assert log["fixed_epochs"] == 3 and [r["epoch"] for r in log["history"]] == [1, 2, 3]
    assert log["best_tune_ndcg@20"] == log["history"][-1]["tune_ndcg@20"]
    capped = train_prior(cold, BundleSettings(**base | {"id_epochs": 2}), progress=False)[1]
    assert [r["epoch"] for r in capped["history"]] == [1, 2] and capped["fixed_epochs"] == capped["epochs_run"] == 2
    assert BundleSettings().bpr_negatives == 1  # CrossCBR's; 4 did not clear the decision floor (issue 57)
    four = train_prior(cold, BundleSettings(**base | {"id_epochs": 2, "bpr_negatives": 4}), progress=False)[1]
    assert four["history"][0]["loss"] != capped["history"][0]["loss"]  # more negatives per triple: another loss


def test_hierarchical_gate_masks_the_prior_of_a_bundle_without_interactions_and_bounds_view_weights():
    torch.manual_seed(0)
    gate = HierarchicalGate()
    with torch.no_grad():
        gate.view_b.lin.bias[:] = torch.tensor([5.0, 0.0])  # prefers the prior wherever it is allowed
        gate.out.weight.normal_()
    n, d = 4, 6
    aB = torch.tensor([[0.0], [0.0], [2.0], [3.0]])
    aI = torch.rand(n, 2)
    eB, dB, eI, dI = (torch.randn(n, d) for _ in range(4))
    vec, g, wB, wI = gate(aB, aI, eB, dB, eI, dI)
    assert vec.shape == (n, 2 * d)
    assert torch.allclose(wB[:2], torch.tensor([[0.0, 1.0]] * 2))  # cold: diffusion only
    assert (wB[2:, 0] > 0.9).all()
    assert torch.allclose(wB.sum(1), torch.ones(n)) and torch.allclose(wI.sum(1), torch.ones(n))
    assert (g.abs() < 1).all()  # tanh output gate (eq. 20)
    torch.testing.assert_close(vec[:2, :d], g[:2, 0:1] * dB[:2])
    gate.output_gate = False
    assert torch.equal(gate(aB, aI, eB, dB, eI, dI)[1], torch.ones(n, 2))


def test_evaluation_masks_training_bundles_and_finds_a_perfect_scorer(cold):
    """An oracle that scores each user's test bundles highest gets recall 1 where <= 20 positives."""
    pos = {}
    for u, b in zip(cold.test.users, cold.test.items):
        pos.setdefault(int(u), set()).add(int(b))

    def oracle(users):
        s = np.zeros((len(users), cold.n_bundles))
        for r, u in enumerate(users):
            s[r, list(pos[int(u)])] = 1.0
        return s

    m = evaluate(cold, cold.test, oracle)
    small = np.mean([len(v) <= 20 for v in pos.values()])
    assert m["recall@20"] >= small - 1e-9 and m["ndcg@20"] > 0.9
    train_lover = lambda users: np.ones((len(users), cold.n_bundles))  # noqa: E731 -- ties: masked train rows must lose
    assert evaluate(cold, cold.test, train_lover)["users"] == len(pos)


def test_cold_calibration_serves_warm_bundles_as_trained_and_cold_ones_scaled_with_the_size_prior(cold):
    rng = np.random.default_rng(0)
    d = 4
    gated = rng.normal(size=(cold.n_bundles, 2 * d)).astype(np.float32)
    anchor = rng.normal(size=(cold.n_bundles, d)).astype(np.float32)
    c = ColdCalibration(bundle_source="anchor", bundle_view=3.0, item_view=0.5, log_size=2.0, offset=-0.5)
    out = served_vectors(cold, gated, anchor, c)
    warm, new = cold.warm_bundles, int(np.unique(cold.test.items)[0])
    np.testing.assert_array_equal(out[warm], with_columns(gated[warm], 0.0, 0.0))
    np.testing.assert_allclose(out[new, :d], 3.0 * anchor[new], rtol=1e-6)
    np.testing.assert_allclose(out[new, d : 2 * d], 0.5 * gated[new, d:], rtol=1e-6)
    assert out[new, -2] == pytest.approx(2.0 * np.log(len(cold.members()[new])) - 0.5, rel=1e-6)
    assert out[new, -1] == 1.0  # met by the user's placement offset
    np.testing.assert_array_equal(served_vectors(cold, gated, anchor, ColdCalibration())[new, :-2], gated[new])


def test_calibration_is_the_tune_argmax_of_its_grid_and_never_below_the_gate_alone(cold):
    """The fast scorer inside ``calibrate_cold`` agrees with serving its choice and evaluating that; on the
    cold split, where bundle size carries popularity, the size prior is chosen over random vectors."""
    rng = np.random.default_rng(1)
    d = 4
    users = rng.normal(size=(cold.n_users, 2 * d)).astype(np.float32)
    gated = rng.normal(size=(cold.n_bundles, 2 * d)).astype(np.float32)
    anchor = rng.normal(size=(cold.n_bundles, d)).astype(np.float32)
    s = BundleSettings(
        calibration_view_grid=[0.0, 1.0],
        calibration_size_grid=[0.0, 4.0],
        calibration_offset_grid=[0.0, -1.0],
        calibration_cold_slots_grid=[5],
    )
    c, placement, log = calibrate_cold(cold, users, gated, anchor, s, progress=False)
    assert c.cold_slots == 0 and not placement.any()  # every tune positive is new: nothing to gain from warm ones
    U = served_users(users)

    def tune(cal):
        V = served_vectors(cold, gated, anchor, cal)
        return evaluate(cold, cold.tune, lambda us: U[us] @ V.T)["ndcg@20"]

    assert log["tried"] == 1 + 2 * 2 * 2 * 2 + 2 + 2
    assert log["tune_ndcg@20"] == pytest.approx(tune(c), abs=1e-12)
    assert log["identity_tune_ndcg@20"] == pytest.approx(tune(ColdCalibration()), abs=1e-12)
    assert c.log_size == 4.0 and log["tune_ndcg@20"] > log["identity_tune_ndcg@20"]
    assert c.offset == 0.0  # on the cold split a negative offset only lets warm bundles in
    only_identity = BundleSettings(
        calibration_view_grid=[1.0],
        calibration_size_grid=[0.0],
        calibration_sources=["gate"],
        calibration_offset_grid=[0.0],
        calibration_cold_slots_grid=[],
    )
    assert calibrate_cold(cold, users, gated, anchor, only_identity, progress=False)[0] == ColdCalibration()


def test_the_calibration_offset_lifts_new_bundles_that_score_below_every_warm_one(cold):
    """Warm bundles outscore every new one for every user; only a positive offset, chosen in the second
    pass in units of the warm scores' spread, lets the new bundles (all of the cold tune split's
    positives) into the top 20."""
    rng = np.random.default_rng(2)
    d = 4
    users = np.abs(rng.normal(size=(cold.n_users, 2 * d))).astype(np.float32) + 1.0
    gated = rng.normal(scale=0.1, size=(cold.n_bundles, 2 * d)).astype(np.float32)
    gated[cold.warm_bundles] += 10.0
    anchor = gated[:, :d].copy()
    s = BundleSettings(
        calibration_view_grid=[1.0],
        calibration_size_grid=[0.0],
        calibration_sources=["gate"],
        calibration_offset_grid=[0.0, 100.0],
        calibration_cold_slots_grid=[],
    )
    c, _, log = calibrate_cold(cold, users, gated, anchor, s, progress=False)
    assert log["tune_ndcg@20_without_offset"] == 0.0 < log["tune_ndcg@20"]
    assert c.offset == pytest.approx(100.0 * log["offset_unit"], rel=1e-5)
    U, V = served_users(users), served_vectors(cold, gated, anchor, c)
    # float32 at an offset of 100 spreads: the two summation orders may swap a few near-tied new bundles
    assert evaluate(cold, cold.tune, lambda us: U[us] @ V.T)["ndcg@20"] == pytest.approx(log["tune_ndcg@20"], rel=5e-3)


def test_the_per_user_placement_puts_k_new_bundles_in_every_top_list_and_k_is_chosen_on_tune():
    """On the all split, new bundles' scores on a scale 100x below warm ones' (they seldom reach a top 20
    and a shared offset cannot fix every user at once): each user's offset lifts exactly k of them into
    their top 20; the k best on tune is chosen over placement off, and the fast tune scorer agrees
    with serving the users' offsets."""
    mixed = load_youshu(YOUSHU, "all")
    rng = np.random.default_rng(3)
    d = 8
    users = rng.normal(size=(mixed.n_users, 2 * d)).astype(np.float32)
    gated = np.zeros((mixed.n_bundles, 2 * d), np.float32)
    for part in (mixed.train, mixed.tune):  # a signal the tune split can see
        np.add.at(gated, part.items, users[part.users])
    new = mixed.bundle_counts() == 0
    gated[new] *= 0.01 * rng.uniform(0.5, 2.0, size=(int(new.sum()), 1)).astype(np.float32)
    anchor = gated[:, :d].copy()
    s = BundleSettings(
        calibration_view_grid=[1.0],
        calibration_size_grid=[0.0],
        calibration_sources=["gate"],
        calibration_offset_grid=[0.0],
        calibration_cold_slots_grid=[3, 10],
    )
    c, placement, log = calibrate_cold(mixed, users, gated, anchor, s, progress=False)
    assert log["tune_ndcg@20_by_cold_slots"][0] == log["tune_ndcg@20_without_placement"] < log["tune_ndcg@20"]
    assert c.cold_slots in (3, 10) and c.list_length == 20 and placement.shape == (mixed.n_users,)
    U, V = served_users(users, placement), served_vectors(mixed, gated, anchor, c)
    # float32, two summation orders: a near-tied pair may swap (a CI rehearsal saw 7e-7); a wrong offset moves far more
    assert evaluate(mixed, mixed.tune, lambda us: U[us] @ V.T)["ndcg@20"] == pytest.approx(
        log["tune_ndcg@20"], abs=1e-5
    )
    tune_new = placement_pool(mixed, "tune_new")
    assert placement_pool(mixed, "all_new") is None and tune_new[np.unique(mixed.tune.items)].all()
    only_tune = placement_tops(mixed, users, V, 20, pool=tune_new)[1]
    test_only = np.setdiff1d(np.unique(mixed.test.items[new[mixed.test.items]]), mixed.tune.items)
    assert len(test_only) and (only_tune <= placement_tops(mixed, users, V, 20)[1] + 1e-6).all()  # a smaller pool
    for k in (1, 7, 19):
        t = placement_offsets(*placement_tops(mixed, users, V, 20), k)
        scores = served_users(users[:300], t[:300]) @ V.T
        scores[mixed.train.users[mixed.train.users < 300], mixed.train.items[mixed.train.users < 300]] = -np.inf
        top = np.argsort(-scores, 1)[:, :20]
        assert (new[top].sum(1) == k).all()


@pytest.mark.parametrize("grid", [[0], [20], [3, 25]])
def test_placement_slots_outside_the_list_are_refused(grid):
    with pytest.raises(ValueError, match="calibration_cold_slots_grid"):
        BundleSettings(calibration_cold_slots_grid=grid)


def test_the_served_gate_variant_is_the_calibrated_one_best_on_tune(cold):
    s = BundleSettings(
        id_epochs=1,
        id_batch=16384,
        eval_every=1,
        composition_epochs=1,
        diffusion_epochs=1,
        gate_epochs=1,
        gate_variants=["full", "no_output_gate"],
        calibration_view_grid=[1.0],
        calibration_size_grid=[0.0, 2.0],
        calibration_sources=["gate"],
    )
    m = train_bundle_model(cold, s, progress=False)
    sel = m.log["gate_selection"]
    assert set(sel["tune_ndcg@20"]) == {"full", "no_output_gate"}
    assert sel["chosen"] == max(sel["tune_ndcg@20"], key=sel["tune_ndcg@20"].get) == m.log["gate"]["variant"]
    assert m.gate.output_gate == (sel["chosen"] == "full")
    assert m.log["calibration"]["tune_ndcg@20"] == sel["tune_ndcg@20"][sel["chosen"]]
    U, V = m.user_vectors(), m.bundle_vectors()
    served = evaluate(cold, cold.tune, lambda us: U[us] @ V.T)["ndcg@20"]
    assert served == pytest.approx(sel["tune_ndcg@20"][sel["chosen"]], abs=1e-9)
    assert gate_variant(s, "cold", "no_augmentation")[1] == 0.0
    with pytest.raises(ValueError, match="gate variant"):
        gate_variant(s, "cold", "no_such_variant")
