"""Issue 17's attacks for ``bench/attack.py``: bodies past every limit (lying and absent Content-Lengths, chunked
80 MB), multipart with 20,000 parts or one 50 MB part, JSON nested 100,000 deep, image bombs, random bytes to every
route of the OpenAPI schema, and slow clients sending their headers a byte at a time; ``Tally`` counts what each
attack was answered."""

from __future__ import annotations

import asyncio
import collections
import io
import json
import os
import random
import uuid

import httpx

KEY = "attacker-key-0123456789"  # a valid write key: the attacker is an authenticated client (no admin key)
POSTS = ["/v1/items", "/v1/items:batch", "/v1/rank", "/v1/items/x/interactions", "/v1/admin/reload"]


class Tally:
    def __init__(self):
        self.by_attack: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)

    def add(self, attack: str, status) -> None:
        self.by_attack[attack][str(status)] += 1


async def raw_request(port: int, head: bytes, body_chunks, pause: float = 0.0, timeout: float = 30.0) -> str:
    """Send ``head`` then each chunk (optionally pausing between them); the status code, or what broke."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), timeout)
    except Exception as exc:
        return f"connect:{exc.__class__.__name__}"
    try:
        writer.write(head)
        for chunk in body_chunks:
            writer.write(chunk)
            await writer.drain()
            if pause:
                await asyncio.sleep(pause)
        line = await asyncio.wait_for(reader.readline(), timeout)
        return line.split()[1].decode() if len(line.split()) > 1 else "closed"
    except (ConnectionError, asyncio.IncompleteReadError):
        return "closed"  # the server hung up mid-body: a refusal, not a failure
    except asyncio.TimeoutError:
        return "timeout"
    finally:
        writer.close()


def chunked(total: int, size: int = 64 * 1024):
    sent = 0
    while sent < total:
        n = min(size, total - sent)
        yield f"{n:x}\r\n".encode() + b"x" * n + b"\r\n"
        sent += n
    yield b"0\r\n\r\n"


def multipart(parts: list[tuple[str, bytes]], boundary: str = "b0undary") -> bytes:
    out = io.BytesIO()
    for name, value in parts:
        out.write(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode() + value + b"\r\n")
    out.write(f"--{boundary}--\r\n".encode())
    return out.getvalue()


async def attacks(port: int, tally: Tally, rounds: int, slow_clients: int, rng: random.Random) -> None:
    url = f"http://127.0.0.1:{port}"
    host = f"Host: 127.0.0.1:{port}\r\nX-API-Key: {KEY}\r\n"
    for _ in range(rounds):
        for path in POSTS:
            # a lying Content-Length: claims 1 GB, sends 1 KB
            head = f"POST {path} HTTP/1.1\r\n{host}Content-Type: application/json\r\nContent-Length: 1000000000\r\n\r\n"
            tally.add("Content-Length 1 GB", await raw_request(port, head.encode(), [b"{" * 1024], timeout=10))
            # chunked, no length, 80 MB: past every route's limit
            head = f"POST {path} HTTP/1.1\r\n{host}Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
            tally.add("chunked 80 MB", await raw_request(port, head.encode(), chunked(80 * 1024 * 1024)))
        # multipart: 20,000 tiny parts; one 50 MB part, chunked
        many = multipart([("text", b"x")] * 20_000)
        head = (
            f"POST /v1/items HTTP/1.1\r\n{host}Content-Type: multipart/form-data; boundary=b0undary\r\n"
            f"Content-Length: {len(many)}\r\n\r\n"
        )
        tally.add("multipart 20k parts", await raw_request(port, head.encode(), [many]))
        head = (
            f"POST /v1/items HTTP/1.1\r\n{host}Content-Type: multipart/form-data; boundary=b0undary\r\n"
            "Transfer-Encoding: chunked\r\n\r\n"
        )
        prefix = b'--b0undary\r\nContent-Disposition: form-data; name="image"; filename="a.jpg"\r\n\r\n'
        body = [f"{len(prefix):x}\r\n".encode() + prefix + b"\r\n", *list(chunked(50 * 1024 * 1024))]
        tally.add("multipart 50 MB part", await raw_request(port, head.encode(), body))
        async with httpx.AsyncClient(base_url=url, timeout=60, headers={"X-API-Key": KEY}) as c:
            deep = "[" * 100_000 + "]" * 100_000
            for path in POSTS:
                r = await c.post(path, content=deep, headers={"content-type": "application/json"})
                tally.add("JSON nested 100k deep", r.status_code)
            # image bombs: a PNG header claiming 50,000 x 50,000 pixels, and bytes that are not an image
            from PIL import Image

            buf = io.BytesIO()
            Image.new("L", (1, 1)).save(buf, "PNG")
            png = bytearray(buf.getvalue())
            png[16:24] = (50_000).to_bytes(4, "big") * 2
            for name, data in (("bomb.png", bytes(png)), ("junk.jpg", os.urandom(4096))):
                r = await c.post(
                    "/v1/items",
                    data={"item_id": f"bomb-{uuid.uuid4().hex[:6]}"},
                    files={"image": (name, data, "image/png")},
                )
                tally.add("image bomb / junk image", r.status_code)
            # random bytes and random JSON to every route and method of the OpenAPI schema
            schema = (await c.get("/openapi.json")).json()
            for path, ops in schema["paths"].items():
                for method in ops:
                    for _ in range(10):
                        p = (
                            path.replace("{item_id}", rng.choice(["x", "%00", "a" * 500, "..%2f"]))
                            .replace("{user_id}", rng.choice(["1", "-1", "%ff", "u" * 300]))
                            .replace("{bundle_id}", rng.choice(["b", "%0a"]))
                        )
                        body = rng.choice(
                            [
                                os.urandom(rng.randint(0, 4096)),
                                json.dumps(
                                    {
                                        "item_ids": [rng.random()] * rng.randint(0, 20000),
                                        "user_id": rng.random(),
                                        "k": -1,
                                    }
                                ).encode(),
                            ]
                        )
                        r = await c.request(
                            method.upper(),
                            p,
                            content=body,
                            headers={
                                "content-type": rng.choice(["application/json", "text/plain", "multipart/form-data"])
                            },
                        )
                        tally.add("random bodies, every route", r.status_code)
        # slow clients: each sends a request's headers one byte every 0.5 s, all at once
        head = f"POST /v1/rank HTTP/1.1\r\n{host}Content-Type: application/json\r\nContent-Length: 10\r\n\r\n".encode()
        slow = [
            asyncio.create_task(raw_request(port, b"", [head[i : i + 1] for i in range(40)], pause=0.5, timeout=30))
            for _ in range(slow_clients)
        ]
        await asyncio.sleep(2)
        async with httpx.AsyncClient(base_url=url, timeout=10) as c:  # does everyone else still get served?
            for _ in range(20):
                try:
                    tally.add("GET /healthz during slow clients", (await c.get("/healthz")).status_code)
                except httpx.HTTPError as exc:
                    tally.add("GET /healthz during slow clients", exc.__class__.__name__)
        for t in slow:
            tally.add(f"{slow_clients} slow clients (1 byte / 0.5 s)", await t)
