"""Loaders and the item cold-start split."""

import numpy as np
import pytest

from models.data import load_generic, load_movielens
from models.split import cold_start_split


@pytest.fixture(scope="module")
def movielens(movielens_dir):
    return load_movielens(movielens_dir, 4.0)


def test_movielens_counts_and_content(movielens):
    assert movielens.n_items == 9742
    assert len(movielens.items) == 48580  # ratings >= 4 of 100,836
    assert movielens.item_texts[0].startswith("Toy Story (1995). Genres: Adventure")
    assert sum(p is None for p in movielens.item_images) == 9742 - 9517


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_split_leaks_no_cold_interaction(movielens, seed):
    sp = cold_start_split(movielens, seed)
    cold = np.concatenate([sp.val_items, sp.test_items])
    assert not np.isin(sp.train.items, cold).any()
    assert not np.isin(sp.warm_val.items, cold).any() and not np.isin(sp.warm_test.items, cold).any()
    assert np.isin(sp.cold_test.items, sp.test_items).all() and np.isin(sp.cold_val.items, sp.val_items).all()
    # items are partitioned 8:1:1 and every interaction lands in exactly one part
    assert len(np.intersect1d(sp.warm_items, cold)) == 0 and len(np.intersect1d(sp.val_items, sp.test_items)) == 0
    assert len(sp.warm_items) + len(cold) == movielens.n_items
    assert abs(len(sp.test_items) - 0.1 * movielens.n_items) <= 1
    parts = (sp.train, sp.warm_val, sp.warm_test, sp.cold_val, sp.cold_test)
    assert sum(len(p) for p in parts) == len(movielens.items)


def test_split_is_seeded(movielens):
    a, b, c = cold_start_split(movielens, 7), cold_start_split(movielens, 7), cold_start_split(movielens, 8)
    assert np.array_equal(a.test_items, b.test_items) and np.array_equal(a.train.users, b.train.users)
    assert not np.array_equal(a.test_items, c.test_items)


def test_the_validation_items_split_into_disjoint_stop_and_select_parts_without_moving_anything_else(movielens):
    """Issue 21: candidates are chosen on validation items no model early-stopped on; holding them out
    leaves every other part of the split as it was."""
    plain, held = cold_start_split(movielens, 3), cold_start_split(movielens, 3, select_share=0.5)
    for a, b in (
        (plain.warm_items, held.warm_items),
        (plain.test_items, held.test_items),
        (plain.train.users, held.train.users),
    ):
        assert np.array_equal(a, b)
    stop, stop_pos = held.validation("stop")
    select, select_pos = held.validation("select")
    assert len(np.intersect1d(stop, select)) == 0 and np.array_equal(np.union1d(stop, select), held.val_items)
    assert abs(len(select) - len(held.val_items) / 2) <= 1
    assert np.isin(stop_pos.items, stop).all() and np.isin(select_pos.items, select).all()
    assert len(stop_pos) + len(select_pos) == len(held.cold_val)
    # without a held-out part every part is the whole validation set; the parts are seeded
    assert all(np.array_equal(plain.validation(p)[0], plain.val_items) for p in ("stop", "select", "all"))
    assert np.array_equal(cold_start_split(movielens, 3, select_share=0.5).val_select_items, held.val_select_items)
    with pytest.raises(ValueError):
        held.validation("test")


def test_generic_format(tmp_path, movielens_dir):
    poster = movielens_dir / "posters" / "1.jpg"
    (tmp_path / "items.csv").write_text(f"item_id,text,image\na,first item,{poster}\nb,only text,\nc,third item,\n")
    (tmp_path / "interactions.csv").write_text(
        "user_id,item_id,timestamp,weight\nu1,a,1,1\nu1,b,2,1\nu2,c,3,0\nu2,zzz,4,1\n"
    )
    ds = load_generic(tmp_path)
    assert ds.item_ids == ["a", "b", "c"] and ds.item_images[0] == poster and ds.item_images[1] is None
    assert ds.item_texts[1] == "only text"
    # weight 0 and unknown items are dropped
    assert ds.user_ids == ["u1"] and list(ds.items) == [0, 1]


def test_most_popular_slice(movielens):
    sub = movielens.most_popular(50)
    assert sub.n_items == 50 and sub.items.max() < 50
    counts = np.bincount(movielens.items, minlength=movielens.n_items)
    kept = {movielens.item_ids.index(i) for i in sub.item_ids}
    assert min(counts[list(kept)]) >= np.sort(counts)[-50]


def test_generic_format_refuses_items_without_content(tmp_path):
    (tmp_path / "items.csv").write_text("item_id,text,image\na,some text,\nb,,\n")
    (tmp_path / "interactions.csv").write_text("user_id,item_id\nu1,a\n")
    with pytest.raises(ValueError, match="neither text nor image.*'b'"):
        load_generic(tmp_path)
    (tmp_path / "items.csv").write_text("item_id,text,image\na,some text,missing.jpg\n")
    with pytest.raises(ValueError, match="do not exist"):
        load_generic(tmp_path)


def test_id_model_diagnostics_warn_when_the_id_space_is_no_better_than_popularity():
    from models.data import Interactions
    from models.idmodel import id_model_diagnostics
    from models.split import ColdStartSplit

    rng = np.random.default_rng(0)
    n_users, n_items = 200, 100
    pop = np.arange(n_items, 0, -1, dtype=float) ** 2  # a steep popularity curve, nothing else
    draw = lambda n: Interactions(rng.integers(0, n_users, n), rng.choice(n_items, n, p=pop / pop.sum()))  # noqa: E731
    empty = Interactions(np.zeros(0, int), np.zeros(0, int))
    split = ColdStartSplit(
        np.arange(n_items), np.zeros(0, int), np.zeros(0, int), draw(4000), draw(600), empty, empty, empty, 0
    )
    weak = id_model_diagnostics(0.05, n_users, n_items, split, seed=0)
    assert weak["popularity_ndcg@20"] > weak["random_ndcg@20"] and not weak["learnt"]
    assert "not clearly better than popularity" in weak["warning"]
    strong = id_model_diagnostics(2.0 * weak["popularity_ndcg@20"], n_users, n_items, split, seed=0)
    assert strong["learnt"] and strong["warning"] is None


def test_the_decide_part_leaves_validation_and_training_and_moves_nothing_else(movielens):
    """Issue 41: a default is decided on validation-cold items that no training, early stopping, selection or
    calibration saw; setting them aside moves no warm item, test item or interaction split."""
    plain = cold_start_split(movielens, 3, select_share=0.5)
    held = cold_start_split(movielens, 3, select_share=0.5, decide_share=0.3)
    for a, b in (
        (plain.warm_items, held.warm_items),
        (plain.test_items, held.test_items),
        (plain.train.users, held.train.users),
        (plain.warm_test.items, held.warm_test.items),
        (plain.cold_test.users, held.cold_test.users),
    ):
        assert np.array_equal(a, b)
    decide = held.decide_items
    assert abs(len(decide) - 0.3 * len(plain.val_items)) <= 1
    assert np.array_equal(np.union1d(decide, held.val_items), plain.val_items)
    assert len(np.intersect1d(decide, held.val_items)) == 0
    assert not np.isin(held.val_select_items, decide).any()
    assert np.isin(held.cold_decide.items, decide).all() and not np.isin(held.cold_val.items, decide).any()
    assert len(held.cold_decide) + len(held.cold_val) == len(plain.cold_val)
    assert not np.isin(held.train.items, decide).any()
    assert plain.decide_items is None and plain.cold_decide is None
    assert np.array_equal(cold_start_split(movielens, 3, decide_share=0.3).decide_items, decide)
