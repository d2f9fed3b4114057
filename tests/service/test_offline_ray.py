"""``coldproxy embed --engine ray`` (issue 43) on a local Ray instance the test starts (``ray.init(num_cpus=2)``),
with real files and a real Redis: the same vectors as the local engine, into Parquet and into the store; bad rows in
the errors table with their reasons, the job carrying on; a rerun writing nothing new."""

from __future__ import annotations

import csv
from pathlib import Path

import httpx
import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from coldproxy.config import ServiceSettings
from service.offline.engines import embed_catalogue
from service.offline.inputs import read_catalogue
from tests.conftest import REDIS_URL, LiveServer, _free_port

BAD = {
    "shop-missing": "image unreadable",
    "shop-broken": "image",
    "shop-empty": "neither text nor image",
    "bad id!": "item_id must match",
    "shop-0": "duplicate item_id",
}


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    d = tmp_path_factory.mktemp("shop")
    (d / "img").mkdir()
    rows = []
    for n in range(10):
        image = ""
        if n % 3:
            Image.new("RGB", (48, 36), (25 * n, 90, 250 - 25 * n)).save(d / "img" / f"{n}.jpg")
            image = f"img/{n}.jpg" if n != 5 else (d / "img" / "5.jpg").as_uri()  # a URI, read through pyarrow.fs
        rows.append({"item_id": f"shop-{n}", "text": f"Wool scarf {n}" if n % 3 != 2 else "", "image": image})
    (d / "img" / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    rows += [
        {"item_id": "shop-missing", "text": "Lost", "image": "img/nowhere.jpg"},
        {"item_id": "shop-broken", "text": "", "image": "img/broken.jpg"},
        {"item_id": "shop-empty", "text": "", "image": ""},
        {"item_id": "bad id!", "text": "Spaces", "image": ""},
        {"item_id": "shop-0", "text": "the same ID again", "image": ""},
    ]
    with (d / "items.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["item_id", "text", "image"])
        w.writeheader()
        w.writerows(rows)
    return d


def settings(package_dir, prefix: str = "unused", roots=()) -> ServiceSettings:
    return ServiceSettings(
        package_dir=package_dir,
        redis_url=REDIS_URL,
        redis_prefix=prefix,
        bundle_package_dir=None,
        micro_batching=False,
        port=_free_port(),
        embed_image_roots=list(roots),
    )


def vectors(out) -> dict[str, np.ndarray]:
    t = pq.read_table(out).to_pydict()
    return dict(zip(t["item_id"], np.array(t["embedding"], np.float32)))


def reasons(path) -> dict[str, str]:
    t = pq.read_table(path).to_pydict()
    return dict(zip(t["item_id"], t["reason"]))


def test_ray_writes_the_local_engines_vectors_and_a_rerun_writes_nothing(local_ray, tiny_package_dir, shop, tmp_path):
    table, s = read_catalogue(shop), settings(tiny_package_dir, roots=[shop])
    local = embed_catalogue(s, table, out=tmp_path / "local.parquet", batch=4, progress=False)
    on_ray = embed_catalogue(s, table, out=tmp_path / "ray.parquet", batch=4, engine="ray", progress=False)
    assert local["embedded"] == on_ray["embedded"] == 10 and local["failed"] == on_ray["failed"] == len(BAD), on_ray
    for run in (local, on_ray):  # start-up apart from the rate after it: several batches of 4, so both are timed
        assert 0 < run["first_batch_s"] <= run["seconds"] and run["after_first_rows_per_s"] > 0, run
    a, b = vectors(tmp_path / "local.parquet"), vectors(tmp_path / "ray.parquet")
    assert sorted(a) == sorted(b) == sorted(f"shop-{n}" for n in range(10))
    for item_id in a:
        np.testing.assert_allclose(b[item_id], a[item_id], rtol=1e-5, atol=1e-5)
    for path in (tmp_path / "local.errors.parquet", tmp_path / "ray.errors.parquet"):
        got = reasons(path)
        assert set(got) == set(BAD) and all(BAD[i] in got[i] for i in BAD), got
    parts = sorted((tmp_path / "ray.parquet").glob("part-*"))
    again = embed_catalogue(s, table, out=tmp_path / "ray.parquet", batch=4, engine="ray", progress=False)
    # only the failed rows are tried again (a fixed picture would go in now); they fail again, nothing new is written
    assert again["todo"] == len(BAD) - 1 and again["embedded"] == 0 and again["skipped"] == {"written": 10}, again
    assert again["failed"] == len(BAD)
    assert sorted((tmp_path / "ray.parquet").glob("part-*")) == parts


def test_ray_stores_into_redis_what_the_service_then_serves(local_ray, tiny_package_dir, shop, tmp_path, fresh_prefix):
    table, s = read_catalogue(shop), settings(tiny_package_dir, fresh_prefix, roots=[shop])
    expected = embed_catalogue(s, table, out=tmp_path / "local.parquet", batch=4, progress=False)
    assert expected["embedded"] == 10
    want = vectors(tmp_path / "local.parquet")
    first = embed_catalogue(s, table, redis=True, batch=4, engine="ray", errors=tmp_path / "e.parquet", progress=False)
    assert first["stored"] == 10 and first["failed"] == len(BAD), first
    again = embed_catalogue(s, table, redis=True, batch=4, engine="ray", errors=tmp_path / "e.parquet", progress=False)
    assert again["stored"] == 0 and again["todo"] == len(BAD) - 1 and again["skipped"] == {"exists": 10}, again
    with LiveServer(s) as live, httpx.Client(base_url=live.url, timeout=30) as c:
        assert c.get("/v1/model").json()["cold_items_indexed"] == 10
        for item_id, v in want.items():
            got = np.array(c.get(f"/v1/items/{item_id}/embedding").json()["embedding"], np.float32)
            np.testing.assert_allclose(got, v, rtol=1e-5, atol=1e-5)


def test_a_parquet_catalogue_with_uris_embeds_as_its_csv_does(tiny_package_dir, shop, tmp_path):
    """The catalogue as a Parquet table (image: a path or a pyarrow-filesystem URI) gives the same vectors."""
    import pyarrow as pa

    table = read_catalogue(shop)
    uris = [p if not p or "://" in p else Path(p).as_uri() for p in table["image"].to_pylist()]
    pq.write_table(table.set_column(2, "image", pa.array(uris, pa.string())), tmp_path / "shop.parquet")
    s = settings(tiny_package_dir, roots=[shop])
    from_csv = embed_catalogue(s, table, out=tmp_path / "csv", batch=4, progress=False)
    from_parquet = embed_catalogue(
        s, read_catalogue(tmp_path / "shop.parquet"), out=tmp_path / "pq", batch=4, progress=False
    )
    assert from_csv["embedded"] == from_parquet["embedded"] == 10
    a, b = vectors(tmp_path / "csv"), vectors(tmp_path / "pq")
    for item_id in a:
        np.testing.assert_allclose(b[item_id], a[item_id], rtol=1e-6, atol=1e-6)


def test_an_untrusted_catalogue_reads_only_its_own_images_and_no_more_than_a_post_would(
    tiny_package_dir, shop, tmp_path
):
    """``../``, absolute paths elsewhere, devices, file:// URIs out of the roots, other schemes and oversized images
    each fail their row (issue 59: ``/dev/zero`` never ended)."""
    import pyarrow as pa

    outside = tmp_path / "outside.jpg"
    Image.new("RGB", (8, 8)).save(outside)
    refs = {
        "dots": "img/../../" + outside.name,
        "absolute": str(outside),
        "device": "/dev/zero",
        "file-uri": outside.as_uri(),
        "http": "http://127.0.0.1:1/x.jpg",
        "big": str(shop / "img" / "1.jpg"),
        "fine": str(shop / "img" / "2.jpg"),
    }
    table = pa.table({"item_id": list(refs), "text": ["x"] * len(refs), "image": list(refs.values())})
    s = settings(tiny_package_dir, roots=[shop]).model_copy(update={"max_request_bytes": 10_000_000})
    small = (shop / "img" / "1.jpg").stat().st_size
    report = embed_catalogue(s, table, out=tmp_path / "out", batch=8, errors=tmp_path / "e.parquet", progress=False)
    why = reasons(tmp_path / "e.parquet")
    assert report["embedded"] == 2 and set(why) == {"dots", "absolute", "device", "file-uri", "http"}, why
    assert "outside" in why["dots"] and "outside" in why["absolute"] and "outside" in why["file-uri"]
    assert "outside" in why["device"] or "regular file" in why["device"]
    assert "not among" in why["http"]
    capped = s.model_copy(update={"max_request_bytes": small - 1})
    embed_catalogue(capped, table, out=tmp_path / "out2", batch=8, errors=tmp_path / "e2.parquet", progress=False)
    assert "larger than" in reasons(tmp_path / "e2.parquet")["big"]
