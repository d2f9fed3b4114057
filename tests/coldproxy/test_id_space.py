"""A team's own ID space as files (issue 38): every reader path, every refusal naming the file and row, and the
fingerprint that tells two spaces apart."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from coldproxy.errors import InvalidInput
from coldproxy.id_space import (
    InvalidVectors,
    check_client_vector,
    for_score,
    read_vectors,
    same_dimension,
    space_fingerprint,
)


def write_parquet(path, ids, rows, column="item_id"):
    pq.write_table(pa.table({column: ids, "embedding": rows}), path)
    return path


def write_npy(path, ids, matrix):
    np.save(path, np.asarray(matrix))
    path.with_name(path.name[:-4] + ".ids.txt").write_text("\n".join(ids) + "\n")
    return path


def test_parquet_and_npy_give_the_same_vectors(tmp_path):
    ids, m = ["a", "b", "c"], np.arange(12, dtype=np.float32).reshape(3, 4) / 7
    p = read_vectors(write_parquet(tmp_path / "items.parquet", ids, m.tolist()), "item_id")
    n = read_vectors(write_npy(tmp_path / "items.npy", ids, m), "item_id")
    assert p.ids == n.ids == ids and p.dim == 4 and p.source == "items.parquet"
    np.testing.assert_array_equal(p.matrix, n.matrix)
    assert p.matrix.dtype == np.float32


@pytest.mark.parametrize(
    "ids, rows, message",
    [
        (["a", "b", "a"], [[1.0, 2.0]] * 3, "row 3: duplicate item_id 'a' (first on row 1)"),
        (
            ["a", "b", "c"],
            [[1.0, 2.0], [1.0, 2.0, 3.0], [1.0, 2.0]],
            "row 2: embedding of 3 values, the rows before have 2",
        ),
        (["a", "b", "c"], [[1.0, 2.0], [1.0, float("nan")], [1.0, 2.0]], "row 2: non-finite values"),
        (["a", "b", "c"], [[1.0, 2.0], [1.0, 2.0], [float("inf"), 2.0]], "row 3: non-finite values"),
        (["a", "b c", "c"], [[1.0, 2.0]] * 3, "row 2: item_id 'b c' is not a valid ID"),
        (["a", "b", "c"], [[1.0, 2.0], [], [1.0, 2.0]], "row 2: empty embedding"),
        (["a", "b"], [[1.0, 2.0], [1.0, None]], "row 2: embedding has a null value"),
    ],
)
def test_a_bad_parquet_file_is_refused_naming_the_file_and_row(tmp_path, ids, rows, message):
    path = write_parquet(tmp_path / "item_embeddings.parquet", ids, rows)
    with pytest.raises(InvalidVectors) as err:
        read_vectors(path, "item_id")
    assert str(path) in str(err.value) and message in str(err.value)


def test_other_unusable_files_are_refused_with_what_is_wrong(tmp_path):
    cases = {
        "missing column": (
            write_parquet(tmp_path / "a.parquet", ["a"], [[1.0]], column="id"),
            "missing column(s) ['item_id']",
        ),
        "no ids file": (tmp_path / "b.npy", "its IDs file b.ids.txt"),
        "ids short": (write_npy(tmp_path / "c.npy", ["a"], np.ones((2, 3))), "1 IDs for 2 rows"),
        "1-D array": (write_npy(tmp_path / "d.npy", ["a", "b"], np.ones(2)), "expected a 2-D numeric array"),
        "csv": (tmp_path / "e.csv", "no such file"),
        "not parquet": (tmp_path / "f.parquet", "not a readable Parquet file"),
    }
    np.save(tmp_path / "b.npy", np.ones((1, 2)))
    (tmp_path / "f.parquet").write_bytes(b"not parquet at all")
    for name, (path, message) in cases.items():
        with pytest.raises(InvalidVectors, match=None) as err:
            read_vectors(path, "item_id")
        assert message in str(err.value), (name, str(err.value))


def test_item_and_user_vectors_must_share_one_dimension(tmp_path):
    items = read_vectors(write_parquet(tmp_path / "i.parquet", ["a"], [[1.0, 2.0]]), "item_id")
    users = read_vectors(write_parquet(tmp_path / "u.parquet", ["u"], [[1.0, 2.0, 3.0]], column="user_id"), "user_id")
    with pytest.raises(InvalidVectors, match="user vectors have 3 values, the item vectors .* 2"):
        same_dimension(items, users)


def test_the_fingerprint_changes_with_any_vector_the_score_or_the_file(tmp_path):
    m = np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32)
    ids = [f"i{k}" for k in range(5)]
    base = read_vectors(write_parquet(tmp_path / "items.parquet", ids, m.tolist()), "item_id")
    again = read_vectors(write_parquet(tmp_path / "items.parquet", ids, m.tolist()), "item_id")
    assert space_fingerprint(base, "dot") == space_fingerprint(again, "dot")
    moved = m.copy()
    moved[3, 1] += 1e-3
    other = read_vectors(write_parquet(tmp_path / "items.parquet", ids, moved.tolist()), "item_id")
    renamed = read_vectors(write_parquet(tmp_path / "items2.parquet", ids, m.tolist()), "item_id")
    prints = {
        space_fingerprint(base, "dot"),
        space_fingerprint(other, "dot"),
        space_fingerprint(base, "cosine"),
        space_fingerprint(renamed, "dot"),
    }
    assert len(prints) == 4


def test_a_cosine_space_keeps_unit_vectors_and_zero_stays_zero():
    m = np.array([[3.0, 4.0], [0.0, 0.0]], np.float32)
    np.testing.assert_allclose(for_score(m, "cosine"), [[0.6, 0.8], [0.0, 0.0]])
    np.testing.assert_array_equal(for_score(m, "dot"), m)


def test_a_client_vector_is_checked_for_dimension_values_and_norm():
    assert check_client_vector([0.6, 0.8], 2, 1.0, "v").dtype == np.float32
    for values, message in (
        ([1.0], "must have 2 values"),
        ([1.0, float("nan")], "finite"),
        ([3.0, 4.0], "norm 5, above 1"),
    ):
        with pytest.raises(InvalidInput, match=message):
            check_client_vector(values, 2, 1.0, "v")


def test_a_huge_client_vector_never_becomes_nan():
    """A cosine space takes any finite length: 1e39 values are made unit-length in float64, not cast to float32 inf
    first (NaN scores, issue 59); without normalising, values past float32's range are refused."""
    unit = check_client_vector([1e39, 1e39], 2, float("inf"), "v", unit=True)
    np.testing.assert_allclose(unit, [2**-0.5, 2**-0.5], rtol=1e-6)
    with pytest.raises(InvalidInput, match="float32"):
        check_client_vector([1e39, 1e39], 2, float("inf"), "v")
