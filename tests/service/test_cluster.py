"""The store on a real Redis Cluster: three masters started by the fixture with redis-server on loopback
ports and joined with ``redis-cli --cluster create``; replicas of the service write, read, follow each
other's writes and roll a new package out on it."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time

import httpx
import pytest
import redis
from redis.crc import key_slot

from coldproxy.config import ServiceSettings
from coldproxy.package import load_package
from tests.conftest import LiveServer, _free_port
from tests.tiny_package import retrain_tiny_package

PARTITIONS = 8


def _ports(n: int) -> list[int]:
    out = []
    while len(out) < n:
        p = _free_port()
        with socket.socket() as s:  # the cluster bus listens on port + 10000 too
            if p + 10000 < 65536 and s.connect_ex(("127.0.0.1", p + 10000)) != 0 and p not in out:
                out.append(p)
    return out


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    server, cli = shutil.which("redis-server"), shutil.which("redis-cli")
    if not server or not cli:
        pytest.skip("redis-server and redis-cli are needed to start a cluster")
    d = tmp_path_factory.mktemp("cluster")
    ports = _ports(3)
    procs = [
        subprocess.Popen(
            [
                server,
                "--port",
                str(p),
                "--bind",
                "127.0.0.1",
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                f"nodes-{p}.conf",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            cwd=d,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for p in ports
    ]
    try:
        nodes = [redis.Redis(port=p) for p in ports]
        deadline = time.time() + 20
        while time.time() < deadline:
            try:
                if all(n.ping() for n in nodes):
                    break
            except redis.ConnectionError:
                time.sleep(0.1)
        r = subprocess.run(
            [
                cli,
                "--cluster",
                "create",
                *[f"127.0.0.1:{p}" for p in ports],
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert r.returncode == 0, r.stdout + r.stderr
        while time.time() < deadline + 20 and not all(n.cluster("info")["cluster_state"] == "ok" for n in nodes):
            time.sleep(0.2)
        yield f"redis://127.0.0.1:{ports[0]}/0", nodes
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(10)


def on_cluster(package_dir, url: str, **over) -> LiveServer:
    return LiveServer(
        ServiceSettings(
            **{
                "package_dir": package_dir,
                "redis_url": url,
                "redis_cluster": True,
                "redis_cluster_partitions": PARTITIONS,
                "redis_prefix": "cp",
                "port": _free_port(),
                "bundle_package_dir": None,
                "reload_grace_s": 0.2,
            }
            | over
        )
    )


def indexed(c: httpx.Client) -> int:
    return c.get("/v1/model").json()["cold_items_indexed"]


def test_replicas_share_items_on_a_cluster_and_a_rollout_carries_them(cluster, tiny_package_dir, tmp_path):
    url, nodes = cluster
    live_dir = tmp_path / "package"
    shutil.copytree(tiny_package_dir, live_dir)
    ids = [f"c-{n}" for n in range(40)]
    with (
        on_cluster(live_dir, url) as a,
        on_cluster(live_dir, url) as b,
        httpx.Client(base_url=a.url, timeout=30) as ca,
        httpx.Client(base_url=b.url, timeout=30) as cb,
    ):
        for i in ids:
            assert ca.post("/v1/items", data={"item_id": i, "text": f"Cotton scarf {i}"}).status_code == 200
        assert ca.post("/v1/items", data={"item_id": "c-1", "text": "again"}).status_code == 409  # no silent overwrite
        # the other replica reads them at once and indexes them from the partitions' streams
        assert all(cb.get(f"/v1/items/{i}/embedding").status_code == 200 for i in ids)
        deadline = time.time() + 10
        while indexed(cb) < len(ids) and time.time() < deadline:
            time.sleep(0.1)
        assert indexed(cb) == len(ids)
        recs = cb.get("/v1/users/2/recommendations", params={"k": 70}).json()["items"]
        assert set(ids) <= {x["item_id"] for x in recs}
        # the keys are spread over the masters, each item's keys (hash, set, stream, kept features) in one slot
        assert sum(n.dbsize() > 0 for n in nodes) >= 2
        keys = [k.decode() for n in nodes for k in n.keys("cp:*")]
        for i in ids[:5]:
            mine = [k for k in keys if k.endswith(f":item:{i}")]
            assert len(mine) == 2 and len({key_slot(k.encode()) for k in mine}) == 1, mine  # proxy + features
        # a replica started now loads every item from the partitioned sets
        with on_cluster(live_dir, url) as c, httpx.Client(base_url=c.url, timeout=30) as cc:
            assert indexed(cc) == len(ids)
        # take-downs on the cluster: a new item's keys (one slot) deleted in one transaction, a warm one hidden; the
        # other replica drops both from its partitions' streams
        assert ca.delete(f"/v1/items/{ids[-1]}").status_code == 204 and ca.delete("/v1/items/warm-1").status_code == 204
        deadline = time.time() + 10
        while time.time() < deadline and any(
            cb.get(f"/v1/items/{i}/embedding").status_code == 200 for i in (ids[-1], "warm-1")
        ):
            time.sleep(0.1)
        assert all(cb.get(f"/v1/items/{i}/embedding").status_code == 404 for i in (ids[-1], "warm-1"))
        assert not [k for n in nodes for k in n.keys(f"cp:*:item:{ids[-1]}")]  # proxy and kept features
        assert cb.post("/v1/items/warm-1/restore").status_code == 204
        ids = ids[:-1]
        # a rollout on the cluster: the new package takes every item over from the kept features
        second = retrain_tiny_package(tiny_package_dir, tmp_path / "second", seed=11)
        for name in ("proxy.onnx", "embeddings.npz", "manifest.json"):
            shutil.copy(second / name, live_dir / name)
        r = ca.post("/v1/admin/reload")
        assert r.status_code == 200 and r.json()["rollout"]["backfill"]["reembedded"] == len(ids), r.text
        v2 = load_package(second).manifest.version
        assert all(ca.get(f"/v1/items/{i}/embedding").json()["package_version"] == v2 for i in ids)
