"""API keys (settings and a rotating key file) and per-client rate limits, unit and over real HTTP."""

import os
import time

import httpx
import pytest

from service.auth import KeyRing, RateLimiter, parse_keys


def test_parse_keys_names_and_comments():
    keys = parse_keys("# ranker keys\nranker:abcdefgh12\n\nbare-key-123456\n", "keys.txt")
    assert keys == {"abcdefgh12": "ranker", "bare-key-123456": "keys.txt#4"}
    with pytest.raises(ValueError, match="at least 8"):
        parse_keys("short", "keys.txt")


def test_key_file_rotates_without_restart(tmp_path):
    f = tmp_path / "keys"
    f.write_text("a:first-key-0001\n")
    ring = KeyRing([], f, recheck_s=0.0)
    assert ring.enabled and ring.identify("first-key-0001") == "a" and ring.identify("nope") is None
    f.write_text("b:second-key-002\n")
    os.utime(f, (time.time() + 5, time.time() + 5))
    assert ring.identify("second-key-002") == "b" and ring.identify("first-key-0001") is None
    f.write_text("x\n")  # an invalid file keeps the keys loaded before
    os.utime(f, (time.time() + 10, time.time() + 10))
    assert ring.identify("second-key-002") == "b"
    assert not KeyRing([], None).enabled
    with pytest.raises(ValueError):
        KeyRing([], tmp_path / "missing")


def test_token_bucket_allows_burst_then_the_rate():
    rl = RateLimiter(rate=2.0, burst=3)
    assert [rl.acquire("c", now=0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert rl.acquire("c", now=0.0) == pytest.approx(0.5)
    assert rl.acquire("other", now=0.0) == 0.0  # buckets are per client
    assert rl.acquire("c", now=0.5) == 0.0  # one token back after 1/rate s
    assert RateLimiter.retry_after(0.2) == "1" and RateLimiter.retry_after(2.1) == "3"
    small = RateLimiter(rate=1.0, burst=1, max_clients=2)
    for c in "abc":
        small.acquire(c, now=0.0)
    assert len(small._buckets) == 2


def test_keys_from_file_guard_reads_when_asked(replica, tmp_path):
    f = tmp_path / "api-keys"
    f.write_text("ranker:ranker-key-123\n")
    with replica(api_keys_file=f, auth_reads=True) as live, httpx.Client(base_url=live.url, timeout=30) as c:
        assert c.get("/v1/model").status_code == 401
        assert c.get("/v1/model", headers={"X-API-Key": "ranker-key-123"}).status_code == 200
        assert c.get("/healthz").status_code == 200 and c.get("/readyz").status_code == 200  # probes stay open
        r = c.post("/v1/items", data={"item_id": "file-key-item", "text": "t"}, headers={"X-API-Key": "ranker-key-123"})
        assert r.status_code == 200, r.text


def test_rate_limit_answers_429_with_retry_after_per_key(replica):
    with (
        replica(api_keys=["key-one-12345", "key-two-12345"], rate_limit_rps=1.0, rate_limit_burst=3) as live,
        httpx.Client(base_url=live.url, timeout=30) as c,
    ):
        one, two = {"X-API-Key": "key-one-12345"}, {"X-API-Key": "key-two-12345"}
        codes = [c.get("/v1/items/nothing-here/embedding", headers=one).status_code for _ in range(5)]
        assert codes[:3] == [404, 404, 404] and codes[3:] == [429, 429]
        limited = c.get("/v1/items/nothing-here/embedding", headers=one)
        assert (
            limited.status_code == 429
            and int(limited.headers["Retry-After"]) >= 1
            and "rate limit" in limited.json()["detail"]
        )
        # the other key has its own bucket
        assert c.get("/v1/items/nothing-here/embedding", headers=two).status_code == 404
        time.sleep(1.1)
        assert c.get("/v1/items/nothing-here/embedding", headers=one).status_code == 404
        assert c.get("/healthz").status_code == 200
