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


def test_hnsw_finds_what_flat_finds_and_skips_overwritten_nodes():
    import threading

    rng = np.random.default_rng(1)
    vecs = (rng.standard_normal((6000, 16)) * rng.uniform(0.5, 2.0, (6000, 1))).astype(np.float32)  # varied norms
    ids = [f"x{k}" for k in range(len(vecs))]
    flat, hnsw = ItemIndex(16), ItemIndex(16, kind="hnsw")
    for index in (flat, hnsw):
        index.upsert(ids[:3000], vecs[:3000])
    q0 = rng.standard_normal(16).astype(np.float32)
    assert not hnsw.ann_ready and hnsw.search(q0, 10) == flat.search(q0, 10)  # exact until the graph is built
    # the graph is built on a thread while items keep arriving; then it grows as they arrive
    builder = threading.Thread(target=hnsw.build_ann, args=(2,))
    builder.start()
    for start in range(3000, 4500, 100):
        for index in (flat, hnsw):
            index.upsert(ids[start : start + 100], vecs[start : start + 100])
    builder.join()
    assert hnsw.ann_ready
    for index in (flat, hnsw):
        index.upsert(ids[4500:], vecs[4500:])
    queries = rng.standard_normal((50, 16)).astype(np.float32)
    recall = np.mean(
        [len({i for i, _ in hnsw.search(q, 10)} & {i for i, _ in flat.search(q, 10)}) / 10 for q in queries]
    )
    assert recall >= 0.95, recall
    for q in queries[:5]:  # scores are the exact inner products, best first
        hits = hnsw.search(q, 10)
        _, stored = hnsw.vectors([i for i, _ in hits])
        assert np.allclose([s for _, s in hits], stored @ q, atol=1e-5) and [s for _, s in hits] == sorted(
            (s for _, s in hits), reverse=True
        )
    # an overwritten item: its new vector is found, once, and its old node never comes back
    q = queries[0]
    top = flat.search(q, 1)[0][0]
    for index in (flat, hnsw):
        index.upsert([top], (-q / np.linalg.norm(q))[None] * 10)
    assert hnsw.stale == 1 and len(hnsw) == len(ids)
    for index in (flat, hnsw):
        hits = index.search(q, 50)
        assert top not in [i for i, _ in hits]  # now the worst match, not the best
        assert len(hits) == 50 and len({i for i, _ in hits}) == 50
        worst = index.search(-q, 1)[0]
        assert worst[0] == top and abs(worst[1] - 10 * float(np.linalg.norm(q))) < 1e-3


def test_an_overwrite_costs_the_same_in_a_large_index():
    """An overwrite writes the item's row in place: no ID map rebuilt over every row (``remove_ids`` on an
    ``IndexIDMap2`` took tens of milliseconds at this size, on the event loop of every replica)."""
    import time

    rng = np.random.default_rng(2)
    index = ItemIndex(32)
    index.upsert([f"r{k}" for k in range(500_000)], rng.standard_normal((500_000, 32)).astype(np.float32))
    times = []
    for k in range(50):
        vec = rng.standard_normal((1, 32)).astype(np.float32)
        vec *= 50 / np.linalg.norm(vec)  # far longer than the rest: its own best match
        t = time.perf_counter()
        index.upsert([f"r{k * 997}"], vec)
        times.append(time.perf_counter() - t)
        assert index.search(vec[0], 1)[0][0] == f"r{k * 997}"
    assert len(index) == 500_000 and float(np.median(times)) < 0.002, np.median(times)


def test_hnsw_compacts_its_stale_nodes_in_the_background():
    import time

    rng = np.random.default_rng(3)
    vecs = rng.standard_normal((2000, 16)).astype(np.float32)
    ids = [f"c{k}" for k in range(2000)]
    flat, hnsw = ItemIndex(16), ItemIndex(16, kind="hnsw", compact_share=0.1)
    for index in (flat, hnsw):
        index.upsert(ids, vecs)
    hnsw.build_ann(1)
    moved = rng.standard_normal((300, 16)).astype(np.float32)
    for k in range(300):  # 15% of the items overwritten, one at a time: past the share, a rebuild starts
        for index in (flat, hnsw):
            index.upsert([ids[k]], moved[k : k + 1])
    deadline = time.time() + 30
    while hnsw._ann.ntotal >= 2300 and time.time() < deadline:  # without a rebuild: a node per overwrite
        time.sleep(0.05)
    # rebuilt from the rows as they were when it began; what was overwritten meanwhile went in after, as new nodes
    assert hnsw._ann.ntotal < 2300 and hnsw.stale < 0.1 * hnsw._ann.ntotal
    queries = rng.standard_normal((30, 16)).astype(np.float32)
    recall = np.mean(
        [len({i for i, _ in hnsw.search(q, 10)} & {i for i, _ in flat.search(q, 10)}) / 10 for q in queries]
    )
    assert recall >= 0.95, recall


def test_a_service_on_hnsw_recommends_new_items(tiny_package_dir, fresh_prefix):
    import time

    import httpx

    from coldproxy.config import ServiceSettings
    from tests.conftest import REDIS_URL, LiveServer, _free_port

    settings = ServiceSettings(
        package_dir=tiny_package_dir,
        redis_url=REDIS_URL,
        redis_prefix=fresh_prefix,
        port=_free_port(),
        bundle_package_dir=None,
        index="hnsw",
    )
    with LiveServer(settings) as live, httpx.Client(base_url=live.url, timeout=30) as c:
        for n in range(5):
            assert c.post("/v1/items", data={"item_id": f"h-{n}", "text": f"Wool hat {n}"}).status_code == 200
        deadline = time.time() + 30
        while 'coldproxy_index_ann_ready{catalog="items"} 1.0' not in c.get("/metrics").text:
            assert time.time() < deadline, "the HNSW graph was not built"
            time.sleep(0.1)
        for n in range(5, 8):  # after the graph is built, it grows as items arrive
            assert c.post("/v1/items", data={"item_id": f"h-{n}", "text": f"Wool hat {n}"}).status_code == 200
        items = c.get("/v1/users/3/recommendations", params={"k": 38, "exclude_seen": "false"}).json()["items"]
        assert len(items) == 38 and {f"h-{n}" for n in range(8)} <= {i["item_id"] for i in items}
        scores = [i["score"] for i in items]
        assert scores == sorted(scores, reverse=True)
