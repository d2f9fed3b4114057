"""Issue 59's attacks for ``bench/attack.py``: one anonymous client trying to stall or silence a replica. Each runs
on its own while another process times ``GET /healthz`` every 20 ms, so the JSON gives ``/healthz`` p50 / p99 / max
per attack:

- the quadratic-counter body (15,000 commas, then an unterminated string of escaped quotes) at 31 KB, 300 KB and the
  route's maximum, 8 at a time, each request's own time too;
- 520 idle TCP connections held 30 s (how many the server closed, and how);
- one unterminated header of up to 32 MiB (the bytes sent before the refusal);
- 5,000 history posts for unknown users;
- two concurrent ``POST /v1/admin/promote`` (with a candidate package only);
- filtered recommendations (``only=new``, ``created_after``, 1,000 ``exclude_ids``) at 1M items, HNSW: a second
  replica on synthetic items written into Redis (``bench/scale.py``'s layout).
"""

from __future__ import annotations

import asyncio
import collections
import multiprocessing as mp
import os
import socket
import time
import uuid
from pathlib import Path

import httpx

ROUTE_MAX = 1_400_000  # about what /v1/rank admits


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def quadratic_body(size: int) -> bytes:
    head = b'{"user_id":"1","item_ids":[' + b"," * 15_000 + b'"'
    return head + b'\\"' * ((size - len(head)) // 2)


def _healthz(port: int, stop, out) -> None:
    lat = []
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as c:
        while not stop.is_set():
            t = time.perf_counter()
            try:
                status = c.get("/healthz").status_code
            except httpx.HTTPError:
                status = 0
            lat.append((time.perf_counter() - t, status))
            time.sleep(0.02)
    out.put(lat)


def percentiles(values: list[float]) -> dict:
    values = sorted(values)
    if not values:
        return {"samples": 0}
    pick = lambda q: round(1000 * values[min(len(values) - 1, int(q * len(values)))], 2)  # noqa: E731
    return {"samples": len(values), "p50_ms": pick(0.5), "p99_ms": pick(0.99), "max_ms": round(1000 * values[-1], 2)}


def probed(port: int, attack) -> tuple[object, dict]:
    """``attack()``'s result, and ``/healthz`` timed from another process while it ran (non-200 answers counted)."""
    stop, out = mp.Event(), mp.Queue()
    probe = mp.Process(target=_healthz, args=(port, stop, out))
    probe.start()
    time.sleep(0.5)
    try:
        result = attack()
    finally:
        stop.set()
        samples = out.get(timeout=60)
        probe.join(timeout=10)
    health = percentiles([t for t, _ in samples]) | {"not_200": sum(s != 200 for _, s in samples)}
    return result, health


def quadratic(port: int, size: int, rounds: int = 3, concurrency: int = 8) -> dict:
    """The body sent ``concurrency`` at a time, ``rounds`` times: each request's status and time."""
    body, statuses, took = quadratic_body(size), [], []

    async def run() -> None:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=600) as c:

            async def one() -> None:
                t = time.perf_counter()
                try:
                    r = await c.post("/v1/rank", content=body, headers={"content-type": "application/json"})
                    statuses.append(str(r.status_code))
                except httpx.HTTPError as exc:
                    statuses.append(exc.__class__.__name__)
                took.append(time.perf_counter() - t)

            for _ in range(rounds):
                await asyncio.gather(*(one() for _ in range(concurrency)))

    asyncio.run(run())
    return {"statuses": dict(collections.Counter(statuses)), "bytes": len(body), "request": percentiles(took)}


def idle_sockets(port: int, n: int = 520, hold_s: float = 30.0) -> dict:
    """``n`` connections that never send a byte, held ``hold_s``; what each had heard when it ended."""

    async def run() -> dict:
        conns = []
        for _ in range(n):
            try:
                conns.append(await asyncio.open_connection("127.0.0.1", port))
            except OSError:
                break
        seen: dict[str, int] = {}

        async def wait(reader) -> str:
            try:
                line = await asyncio.wait_for(reader.readline(), hold_s)
            except asyncio.TimeoutError:
                return "open"
            except ConnectionError:
                return "reset"
            return line.split()[1].decode() if len(line.split()) > 1 else "closed"

        for status in await asyncio.gather(*(wait(r) for r, _ in conns)):
            seen[status] = seen.get(status, 0) + 1
        for _, w in conns:
            w.close()
        return {"opened": len(conns), "ended_as": seen}

    return asyncio.run(run())


def huge_header(port: int, limit: int = 32 * 1024 * 1024, chunk: int = 64 * 1024) -> dict:
    """An unterminated header streamed up to ``limit`` bytes: the bytes sent when the server refused it."""

    async def run() -> dict:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: ")
        sent, status, pad = 0, "none", b"a" * chunk
        try:
            while sent < limit:
                writer.write(pad)
                await writer.drain()
                sent += chunk
                try:
                    line = await asyncio.wait_for(reader.readline(), 0.005)
                    status = line.split()[1].decode() if len(line.split()) > 1 else "closed"
                    break
                except asyncio.TimeoutError:
                    continue
        except ConnectionError:
            status = "reset"
        finally:
            writer.close()
        return {"statuses": {status: 1}, "bytes_sent_before_refusal": sent}

    return asyncio.run(run())


def unknown_histories(port: int, n: int = 5000, concurrency: int = 16) -> dict:
    async def run() -> dict:
        seen: dict[str, int] = {}
        sem = asyncio.Semaphore(concurrency)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as c:

            async def one(k: int) -> None:
                async with sem:
                    try:
                        s = str(
                            (
                                await c.post(
                                    f"/v1/users/stranger-{k}/interactions",
                                    json={"item_ids": [f"i{j}" for j in range(1000)]},
                                )
                            ).status_code
                        )
                    except httpx.HTTPError as exc:
                        s = exc.__class__.__name__
                    seen[s] = seen.get(s, 0) + 1

            await asyncio.gather(*(one(k) for k in range(n)))
        return {"statuses": seen}

    return asyncio.run(run())


def two_promotes(port: int) -> dict:
    async def run() -> dict:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=600) as c:
            rs = await asyncio.gather(c.post("/v1/admin/promote"), c.post("/v1/admin/promote"))
            write = await c.post("/v1/items", json={"item_id": "after-promote", "text": "a plain white mug"})
        return {"statuses": sorted(str(r.status_code) for r in rs), "post_after": write.status_code}

    return asyncio.run(run())


def filtered_recommendations(port: int, users: list[str], rounds: int = 20, concurrency: int = 8) -> dict:
    """Recommendations whose filters force an exact scan, or that leave out 1,000 IDs, ``concurrency`` at a time."""
    exclude = [f"syn-{k}" for k in range(1000)]
    shapes = [
        ("GET", "/v1/users/{u}/recommendations", {"k": 100, "only": "new"}, None),
        ("GET", "/v1/users/{u}/recommendations", {"k": 100, "created_after": "2000-01-01T00:00:00Z"}, None),
        ("POST", "/v1/recommendations", None, {"user_id": "{u}", "k": 100, "exclude_ids": exclude}),
    ]

    async def run() -> dict:
        seen, took, sem = {}, [], asyncio.Semaphore(concurrency)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=120) as c:

            async def one(n: int) -> None:
                method, path, params, body = shapes[n % len(shapes)]
                u = users[n % len(users)]
                if body is not None:
                    body = body | {"user_id": u}
                async with sem:
                    t = time.perf_counter()
                    try:
                        s = str((await c.request(method, path.replace("{u}", u), params=params, json=body)).status_code)
                    except httpx.HTTPError as exc:
                        s = exc.__class__.__name__
                    took.append(time.perf_counter() - t)
                    seen[s] = seen.get(s, 0) + 1

            await asyncio.gather(*(one(n) for n in range(rounds * concurrency * len(shapes))))
        return {"statuses": seen, "request": percentiles(took)}

    return asyncio.run(run())


def filtered_at_scale(package_dir: Path, redis_url: str, items: int, tally) -> dict:
    """A second replica, HNSW, on ``items`` synthetic new items (written into Redis as ``bench/scale.py`` does):
    filtered recommendations 8 at a time, ``/healthz`` timed beside them."""
    import redis
    from scale import drop, write_items
    from serving import start_server

    from coldproxy.package import load_package

    package = load_package(package_dir)
    prefix, port, r = f"attack-scale-{uuid.uuid4().hex[:8]}", free_port(), redis.Redis.from_url(redis_url)
    written_s = write_items(r, prefix, package, items)
    saved = {k: os.environ.get(k) for k in ("COLDPROXY_INDEX", "COLDPROXY_REDIS_URL", "COLDPROXY_HOST")}
    os.environ.update(COLDPROXY_INDEX="hnsw", COLDPROXY_REDIS_URL=redis_url, COLDPROXY_HOST="127.0.0.1")
    server = None
    try:
        server = start_server(port, prefix, package_dir, timeout=900)
        t, url = time.time(), f"http://127.0.0.1:{port}"
        while 'coldproxy_index_ann_ready{catalog="items"} 1.0' not in httpx.get(url + "/metrics").text:
            time.sleep(2)
        ann_s = time.time() - t
        name = f"filtered recommendations at {items:,} items (HNSW)"
        result, health = probed(port, lambda: filtered_recommendations(port, package.user_ids[:50]))
        for status, n in result["statuses"].items():
            for _ in range(n):
                tally.add(name, status)
        return {
            name: result
            | {
                "healthz": health,
                "items_written_s": round(written_s, 1),
                "hnsw_ready_s": round(ann_s, 1),
                "rss_mb": round(rss_mb(server.pid), 1),
            }
        }
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=60)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        drop(r, prefix)
