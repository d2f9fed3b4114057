"""The replica's item index: FAISS search and the by-ID vectors that reads are served from."""

import numpy as np

from service.storage.index import ItemIndex


def test_vectors_follow_upserts_through_growth_and_overwrites():
    rng = np.random.default_rng(0)
    index = ItemIndex(8)
    first = rng.standard_normal((5, 8)).astype(np.float32)
    index.upsert([f"i{k}" for k in range(5)], first)
    more = rng.standard_normal((20, 8)).astype(np.float32)  # forces the matrix to grow
    index.upsert([f"j{k}" for k in range(20)], more)
    replaced = rng.standard_normal((1, 8)).astype(np.float32)
    index.upsert(["i2"], replaced)
    found, got = index.vectors(["i0", "unknown", "i2", "j19"])
    assert found == [0, 2, 3] and got.shape == (3, 8)
    np.testing.assert_array_equal(got[0], first[0])
    np.testing.assert_array_equal(got[1], replaced[0])
    np.testing.assert_array_equal(got[2], more[19])
    assert len(index) == 25
    # FAISS and the by-ID copy hold the same vectors: every search score is the stored vector's inner product
    q = rng.standard_normal(8).astype(np.float32)
    hits = index.search(q, 25)
    found, stored = index.vectors([i for i, _ in hits])
    assert len(hits) == 25 and found == list(range(25))
    for (item_id, score), vec in zip(hits, stored):
        assert abs(score - float(vec @ q)) < 1e-5
