"""Redis killed in the middle of a write load: no 500s, 503 + Retry-After while it is away, the
service recovers by itself, and every acknowledged item is in Redis afterwards.

Uses a private redis-server with an append-only file on its own port, because the shared one on
6379 keeps nothing on disk and other tests depend on it. What an acknowledgement promises: a 200
means Redis has applied the write; it survives a crash of Redis when Redis fsyncs its append-only
file on every write (``appendfsync always``, the chart's default). With ``everysec`` up to about a
second of acknowledged writes can be lost on a crash of the machine (not on a clean restart).

What a process kill can and cannot show: SIGKILL stops redis-server, not the kernel, so whatever it had written to
its append-only file is still in the page cache and is read back on restart whether or not it was fsynced. This test
therefore shows that no item is acknowledged before Redis has applied it and appended it to its file (a service that
answered 200 first, or a Redis without the append-only file, fails it), and that the service rides out the outage;
it cannot tell ``appendfsync always`` from ``everysec`` -- only losing the machine's power or kernel could.
"""

import shutil
import subprocess
import threading
import time

import httpx
import pytest
import redis

from tests.conftest import _free_port


class PrivateRedis:
    def __init__(self, workdir, fsync: str = "always"):
        self.port, self.dir, self.fsync, self.proc = _free_port(), workdir, fsync, None

    def start(self) -> None:
        exe = shutil.which("redis-server")
        if exe is None:
            pytest.fail("redis-server is not on PATH")
        # the Helm chart's in-cluster Redis: append-only file, fsync per redis.internal.appendfsync
        self.proc = subprocess.Popen(
            [
                exe,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.dir),
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                self.fsync,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port)
        for _ in range(200):
            try:
                if client.ping():
                    return
            except (redis.ConnectionError, redis.BusyLoadingError):
                time.sleep(0.05)
        raise RuntimeError("private redis-server did not start")

    def kill(self) -> None:
        """SIGKILL: no shutdown, no final fsync -- what a crash or an OOM kill does."""
        self.proc.kill()
        self.proc.wait(timeout=10)


def test_redis_killed_mid_load_loses_no_acknowledged_item(replica, trained, tmp_path):
    """4 writers; redis-server SIGKILLed and restarted from its append-only file (fsync always, the
    chart's default). Afterwards every acknowledged item is read from Redis itself and from a replica
    started fresh (nothing in its memory), not through the replica that took the writes."""
    r = PrivateRedis(tmp_path)
    r.start()
    acked, statuses, retry_after = [], [], []
    stop = threading.Event()

    def writer(url, w):
        with httpx.Client(base_url=url, timeout=30) as c:
            n = 0
            while not stop.is_set():
                item = f"rs-{w}-{n}"
                resp = c.post("/v1/items", data={"item_id": item, "text": f"Restart test movie {w} number {n}."})
                statuses.append(resp.status_code)
                if resp.status_code == 200:
                    acked.append(item)
                elif resp.status_code == 503:
                    retry_after.append(resp.headers.get("retry-after"))
                n += 1

    url = f"redis://127.0.0.1:{r.port}/0"
    try:
        with replica(redis_url=url, redis_prefix="restart-test") as live:
            threads = [threading.Thread(target=writer, args=(live.url, w)) for w in range(4)]
            for t in threads:
                t.start()
            time.sleep(1.5)
            before = len(acked)
            r.kill()
            time.sleep(1.0)
            with httpx.Client(base_url=live.url, timeout=30) as c:
                ready = c.get("/readyz")  # Redis is away: degraded, still in the Service for warm reads
                assert ready.status_code == 200 and ready.json()["status"] == "degraded"
                assert c.get("/healthz").status_code == 200
                warm_id = trained.dataset.item_ids[trained.split.warm_items[0]]
                warm = c.get(f"/v1/items/{warm_id}/embedding")  # the package's own items need no Redis
                assert warm.status_code == 200 and warm.json()["source"] == "id"
            r.start()
            time.sleep(3.0)
            stop.set()
            for t in threads:
                t.join(timeout=30)
            assert before > 0 and 500 not in statuses
            assert set(statuses) <= {200, 503}, set(statuses)
            assert 503 in statuses and all(v is not None for v in retry_after)
            assert statuses[-5:] == [200] * 5, statuses[-20:]  # it recovered by itself
            version = httpx.get(live.url + "/v1/model").json()["package_version"]
        direct = redis.Redis(port=r.port)
        lost = [i for i in acked if direct.hget(f"restart-test:{version}:item:{i}", "emb") is None]
        assert not lost, f"{len(lost)} of {len(acked)} acknowledged items not in Redis after SIGKILL: {lost[:5]}"
        with (
            replica(redis_url=url, redis_prefix="restart-test") as fresh,
            httpx.Client(base_url=fresh.url, timeout=30) as c,
        ):
            missing = [i for i in acked if c.get(f"/v1/items/{i}/embedding").status_code != 200]
        assert not missing, f"{len(missing)} acknowledged items not served by a fresh replica: {missing[:5]}"
    finally:
        stop.set()
        if r.proc.poll() is None:
            r.kill()
