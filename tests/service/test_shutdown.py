"""Graceful shutdown: on SIGTERM the real `coldproxy serve` process stops accepting, lets the
requests in flight finish (none dropped) and exits within COLDPROXY_SHUTDOWN_GRACE_S."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import httpx

from tests.conftest import REDIS_URL, _free_port


def test_sigterm_drains_requests_in_flight(tiny_package_dir, redis_prefix):
    port = _free_port()
    env = os.environ | {
        "COLDPROXY_REDIS_URL": REDIS_URL,
        "COLDPROXY_REDIS_PREFIX": f"{redis_prefix}:shutdown",
        "COLDPROXY_BUNDLES_PACKAGE_DIR": "",
        "COLDPROXY_SHUTDOWN_GRACE_S": "10",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "coldproxy_cli", "serve", "--package-dir", str(tiny_package_dir), "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                if httpx.get(url + "/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        results: list = []

        def slow_post(n: int) -> None:
            def body():  # a client that takes ~1.5 s to send its request
                yield b'{"item_id": "drain-%d", ' % n
                time.sleep(1.5)
                yield b'"text": "a request in flight at SIGTERM"}'

            try:
                r = httpx.post(
                    url + "/v1/items", content=body(), headers={"content-type": "application/json"}, timeout=30
                )
                results.append(r.status_code)
            except httpx.HTTPError as exc:
                results.append(repr(exc))

        threads = [threading.Thread(target=slow_post, args=(n,)) for n in range(6)]
        for t in threads:
            t.start()
        time.sleep(0.5)  # all six are sending
        t0 = time.time()
        proc.send_signal(signal.SIGTERM)
        for t in threads:
            t.join(timeout=30)
        assert results == [200] * 6, results  # none dropped
        # uvicorn re-raises the SIGTERM it handled once drained, so the exit reads as that signal
        assert proc.wait(timeout=15) in (0, -signal.SIGTERM) and time.time() - t0 < 12
        try:
            httpx.get(url + "/healthz", timeout=1)
            raise AssertionError("still accepting after SIGTERM")
        except httpx.ConnectError:
            pass
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
