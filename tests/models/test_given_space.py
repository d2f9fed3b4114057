"""Training against a given ID space (issue 38), the part before any model: the vector files aligned to a
dataset in the generic format, each mode's dataset and split, and the refusals that stop a run before it writes
anything."""

from __future__ import annotations

import csv

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from coldproxy.config import TrainSettings
from coldproxy.id_space import InvalidVectors
from models.given_space import QUERY_PREFIX, given_files, load_training_data
from models.split import cold_start_split


def catalogue(root, items: int = 30, users: int = 12, with_interactions: bool = True):
    """A generic-format directory: text-only items, each user clicking a few of them."""
    root.mkdir(parents=True, exist_ok=True)
    with (root / "items.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["item_id", "text", "image"])
        for i in range(items):
            w.writerow([f"it{i}", f"article number {i}", ""])
    if with_interactions:
        rng = np.random.default_rng(0)
        with (root / "interactions.csv").open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["user_id", "item_id"])
            for u in range(users):
                for i in rng.choice(items, 6, replace=False):
                    w.writerow([f"u{u}", f"it{i}"])
    return root


def vectors(path, column, ids, dim=4, seed=0):
    m = np.random.default_rng(seed).standard_normal((len(ids), dim)).astype(np.float32)
    pq.write_table(pa.table({column: ids, "embedding": m.tolist()}), path)
    return m


def settings(root, **over) -> TrainSettings:
    return TrainSettings(data_dir=root, data_format="generic", **over)


def test_the_generic_directory_files_are_found_and_users_without_items_refused(tmp_path):
    root = catalogue(tmp_path / "data")
    assert given_files(settings(root)) == (None, None)
    vectors(root / "user_embeddings.parquet", "user_id", ["u0"])
    with pytest.raises(InvalidVectors, match="without item vectors"):
        given_files(settings(root))
    vectors(root / "item_embeddings.parquet", "item_id", ["it0"])
    assert given_files(settings(root)) == (root / "item_embeddings.parquet", root / "user_embeddings.parquet")


def test_items_and_users_align_to_the_dataset_and_report_what_they_leave_out(tmp_path):
    root = catalogue(tmp_path / "data")
    item_ids = [f"it{i}" for i in range(0, 30, 2)] + ["not-in-catalogue-1", "not-in-catalogue-2"]
    items = vectors(root / "item_embeddings.parquet", "item_id", item_ids)
    users = vectors(root / "user_embeddings.parquet", "user_id", [f"u{u}" for u in range(10)] + ["u-new"], seed=1)
    ds, space = load_training_data(settings(root, score_function="cosine"))
    assert ds.user_ids == [f"u{u}" for u in range(10)] + ["u-new"]  # the given users, in the file's order
    assert space.ranking and space.user_emb.shape == (11, 4)
    np.testing.assert_allclose(np.linalg.norm(space.user_emb, axis=1), 1.0, rtol=1e-5)
    row = ds.item_ids.index("it4")
    np.testing.assert_allclose(space.item_emb[row], items[2] / np.linalg.norm(items[2]), rtol=1e-5)
    assert space.has_vector.sum() == 15 and not space.has_vector[ds.item_ids.index("it3")]
    report = space.info["report"]
    assert report["unknown_item_rows"] == 2 and report["unknown_item_examples"] == [
        "not-in-catalogue-1",
        "not-in-catalogue-2",
    ]
    assert report["interactions_without_user_vector"] == 12  # users u10, u11 (6 clicks each) have no vector
    assert space.info["item_vectors"] == 17 and space.info["user_vectors"] == 11 and space.info["score"] == "cosine"
    # warm items are the ones with a vector: the others leave the split, their clicks with them
    split = cold_start_split(ds, 0).restrict_warm(space.has_vector)
    assert space.has_vector[split.warm_items].all()
    assert np.isin(split.train.items, split.warm_items).all() and np.isin(split.warm_val.items, split.warm_items).all()
    assert users.shape == (11, 4)


def test_item_vectors_alone_make_each_item_its_own_query_and_need_no_interactions(tmp_path):
    root = catalogue(tmp_path / "data", with_interactions=False)
    item_ids = [f"it{i}" for i in range(25)]
    m = vectors(root / "item_embeddings.parquet", "item_id", item_ids)
    ds, space = load_training_data(settings(root))
    assert not space.ranking and ds.user_ids == [QUERY_PREFIX + i for i in item_ids]
    np.testing.assert_array_equal(space.user_emb, m)  # each query is its item's own vector
    assert list(ds.items) == [ds.item_ids.index(i) for i in item_ids] and list(ds.users) == list(range(25))


def test_a_file_that_matches_nothing_is_refused_before_anything_is_written(tmp_path):
    root = catalogue(tmp_path / "data")
    vectors(root / "item_embeddings.parquet", "item_id", ["x1", "x2"])
    with pytest.raises(InvalidVectors, match="none of its 2 item IDs is an item of the dataset"):
        load_training_data(settings(root))
    vectors(root / "item_embeddings.parquet", "item_id", ["it1", "it2"])
    vectors(root / "user_embeddings.parquet", "user_id", ["someone-else"])
    with pytest.raises(InvalidVectors, match="no interaction is by a user of this file"):
        load_training_data(settings(root))
    vectors(root / "user_embeddings.parquet", "user_id", ["u1"], dim=3)
    with pytest.raises(InvalidVectors, match="user vectors have 3 values"):
        load_training_data(settings(root))


def test_train_refuses_a_bad_file_and_writes_no_checkpoint(tmp_path):
    from models.items.train import train

    root = catalogue(tmp_path / "data")
    pq.write_table(
        pa.table({"item_id": ["it1", "it2", "it1"], "embedding": [[1.0, 2.0]] * 3}), root / "item_embeddings.parquet"
    )
    work = tmp_path / "work"
    with pytest.raises(InvalidVectors, match=r"item_embeddings.parquet: row 3: duplicate item_id 'it1'"):
        train(settings(root, work_dir=work, cache_dir=tmp_path / "cache"), lambda _: pytest.fail("no features"))
    assert not work.exists()
