"""Redis restarted in the middle of a write load: no 500s, 503 + Retry-After while it is away,
the service recovers by itself, and every acknowledged item is readable afterwards.

Uses a private redis-server with an append-only file (fsync always) on its own port, because the
shared one on 6379 keeps nothing on disk and other tests depend on it.
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
    def __init__(self, workdir):
        self.port, self.dir, self.proc = _free_port(), workdir, None

    def start(self) -> None:
        exe = shutil.which("redis-server")
        if exe is None:
            pytest.fail("redis-server is not on PATH")
        self.proc = subprocess.Popen(
            [exe, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir), "--save", "",
             "--appendonly", "yes", "--appendfsync", "always"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port)
        for _ in range(100):
            try:
                if client.ping():
                    return
            except redis.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError("private redis-server did not start")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


def test_redis_restart_loses_no_acknowledged_item(replica, tmp_path):
    r = PrivateRedis(tmp_path)
    r.start()
    acked, statuses, retry_after = [], [], []
    stop = threading.Event()

    def writer(url):
        with httpx.Client(base_url=url, timeout=30) as c:
            n = 0
            while not stop.is_set():
                item = f"rs-{n}"
                resp = c.post("/v1/items", data={"item_id": item, "text": f"Restart test movie number {n}."})
                statuses.append(resp.status_code)
                if resp.status_code == 200:
                    acked.append(item)
                elif resp.status_code == 503:
                    retry_after.append(resp.headers.get("retry-after"))
                n += 1

    try:
        with replica(redis_url=f"redis://127.0.0.1:{r.port}/0", redis_prefix="restart-test") as live:
            t = threading.Thread(target=writer, args=(live.url,))
            t.start()
            time.sleep(1.5)
            before = len(acked)
            r.stop()
            time.sleep(1.0)
            with httpx.Client(base_url=live.url, timeout=30) as c:
                assert c.get("/readyz").status_code == 503  # Redis is away: not ready
                assert c.get("/healthz").status_code == 200  # but alive
            r.start()
            time.sleep(3.0)
            stop.set()
            t.join(timeout=30)
            assert before > 0 and 500 not in statuses
            assert set(statuses) <= {200, 503}, set(statuses)
            assert 503 in statuses and all(v is not None for v in retry_after)
            # it recovered by itself: the writes at the end went through
            assert statuses[-5:] == [200] * 5, statuses[-20:]
            with httpx.Client(base_url=live.url, timeout=30) as c:
                assert c.get("/readyz").status_code == 200
                missing = [i for i in acked if c.get(f"/v1/items/{i}/embedding").status_code != 200]
            assert not missing, f"{len(missing)} acknowledged items lost: {missing[:5]}"
    finally:
        stop.set()
        r.stop()
