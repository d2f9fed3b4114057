"""``coldproxy embed``: a catalogue through the same ONNX pipeline as POST /v1/items, into Parquet or Redis."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import uuid

import httpx
import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from tests.conftest import REDIS_URL


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory):
    d = tmp_path_factory.mktemp("catalogue")
    rows = []
    for n in range(12):
        image = ""
        if n % 3:
            image = f"img/{n}.png"
            (d / "img").mkdir(exist_ok=True)
            Image.new("RGB", (40, 30), (20 * n, 100, 255 - 20 * n)).save(d / image)
        rows.append({"item_id": f"cat-{n}", "text": f"Linen shirt number {n}" if n != 4 else "", "image": image})
    (d / "img" / "broken.png").write_bytes(b"not a png")
    rows.append({"item_id": "cat-broken", "text": "", "image": "img/broken.png"})
    with (d / "items.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["item_id", "text", "image"])
        w.writeheader()
        w.writerows(rows)
    return d, rows


def embed(*args: str, **env: str) -> dict:
    r = subprocess.run(
        [sys.executable, "-m", "coldproxy_cli", "embed", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=os.environ | {"COLDPROXY_REDIS_URL": REDIS_URL} | env,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def post_like(tiny, catalogue_dir, row) -> np.ndarray:
    files = {"image": open(catalogue_dir / row["image"], "rb")} if row["image"] else None
    r = tiny.post("/v1/items", data={"item_id": f"check-{uuid.uuid4().hex[:6]}", "text": row["text"]}, files=files)
    assert r.status_code == 200, r.text
    return np.array(r.json()["embedding"], np.float32)


def test_embed_writes_parquet_matching_the_http_path(tiny, tiny_package_dir, catalogue, tmp_path):
    d, rows = catalogue
    out = tmp_path / "emb.parquet"
    report = embed("--data", str(d), "--package-dir", str(tiny_package_dir), "--out", str(out), "--batch", "5")
    assert report["embedded"] == 12 and report["failed"] == 1, report  # the broken image fails alone
    assert pq.read_table(tmp_path / "emb.errors.parquet").to_pydict()["item_id"] == ["cat-broken"]
    table = pq.read_table(out).to_pydict()  # a dataset directory of parts, read as one table
    assert table["item_id"] == [r["item_id"] for r in rows[:12]]
    assert set(table["modalities"]) == {"text", "image", "text,image"}
    emb = np.array(table["embedding"], np.float32)
    assert emb.shape == (12, 8) and np.isfinite(emb).all()
    for k in (0, 1, 4):  # text only, both, image only: what POST /v1/items serves for the same content
        np.testing.assert_allclose(emb[k], post_like(tiny, d, rows[k]), rtol=1e-4, atol=1e-5)


def test_embed_to_redis_stores_items_the_service_then_serves(tiny_package_dir, catalogue, redis_client, fresh_prefix):
    from coldproxy.config import ServiceSettings
    from tests.conftest import LiveServer, _free_port

    d, rows = catalogue
    prefix = fresh_prefix
    env = {"COLDPROXY_REDIS_PREFIX": prefix, "COLDPROXY_BUNDLES_PACKAGE_DIR": ""}
    first = embed(
        "--data",
        str(d),
        "--package-dir",
        str(tiny_package_dir),
        "--to",
        "redis",
        "--errors",
        str(d / "redis.errors.parquet"),
        **env,
    )
    assert first["stored"] == 12 and first["failed"] == 1, first
    again = embed(
        "--data",
        str(d),
        "--package-dir",
        str(tiny_package_dir),
        "--to",
        "redis",
        "--errors",
        str(d / "redis.errors.parquet"),
        **env,
    )
    assert again["stored"] == 0 and again["skipped"] == {"exists": 12}, again  # nothing silently overwritten
    assert len(list(redis_client.scan_iter(f"{prefix}:features:*:item:*"))) == 12  # re-embeddable later
    settings = ServiceSettings(
        package_dir=tiny_package_dir,
        redis_url=REDIS_URL,
        redis_prefix=prefix,
        port=_free_port(),
        bundle_package_dir=None,
    )
    with LiveServer(settings) as live, httpx.Client(base_url=live.url, timeout=30) as c:
        assert c.get("/v1/model").json()["cold_items_indexed"] == 12
        assert c.get("/v1/items/cat-3/embedding").status_code == 200
