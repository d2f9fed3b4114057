"""Dynamic micro-batching: the batching logic on its own, then through the real service."""

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest

from coldproxy.errors import QueueFull
from service.api.errors import headers_of, status_of
from service.engine.batcher import MicroBatcher
from service.metrics import Metrics


def test_concurrent_items_are_batched_up_to_the_limit_and_answered_in_order():
    sizes = []

    def infer(batch):
        sizes.append(len(batch))
        return [x * 10 for x in batch]

    async def scenario():
        b = MicroBatcher(infer, Metrics(), max_batch=4, max_wait_s=0.05, max_queue=100, workers=1)
        b.start()
        try:
            return await asyncio.gather(*(b.submit(i) for i in range(10)))
        finally:
            await b.stop()

    assert asyncio.run(scenario()) == [i * 10 for i in range(10)]
    assert max(sizes) == 4 and sum(sizes) == 10 and len(sizes) == 3


def test_a_lone_item_runs_at_once_while_a_worker_is_idle_and_waits_for_company_when_all_are_busy():
    sizes, release = [], threading.Event()

    def infer(batch):
        sizes.append(len(batch))
        if batch == ["slow"]:
            release.wait(5)
        return batch

    async def scenario():
        b = MicroBatcher(infer, Metrics(), max_batch=8, max_wait_s=0.5, max_queue=100, workers=2)
        b.start()
        await asyncio.sleep(0.01)  # both workers waiting for items, as in a running service
        try:
            t = time.perf_counter()
            assert await b.submit("alone") == "alone"
            lone = time.perf_counter() - t
            slow = asyncio.create_task(b.submit("slow"))  # keeps one worker busy
            await asyncio.sleep(0.05)
            t = time.perf_counter()
            first = asyncio.create_task(b.submit("x"))  # the other worker takes it and, none idle, waits to fill
            await asyncio.sleep(0.1)
            got = await asyncio.gather(first, b.submit("y"), b.submit("z"))
            filled = time.perf_counter() - t
            release.set()
            await slow
            return lone, got, filled
        finally:
            await b.stop()

    lone, got, filled = asyncio.run(scenario())
    assert lone < 0.25, lone  # not held for max_wait_s
    assert got == ["x", "y", "z"] and sizes == [1, 1, 3]
    assert filled >= 0.45, filled  # held for company, which came


def test_full_queue_is_refused_at_once_and_a_failing_batch_fails_only_its_requests():
    release = threading.Event()

    def infer(batch):
        release.wait(5)
        if "boom" in batch:
            raise RuntimeError("graph failed")
        return batch

    async def scenario():
        b = MicroBatcher(infer, Metrics(), max_batch=1, max_wait_s=0.0, max_queue=2, workers=1)
        b.start()
        try:
            first = asyncio.create_task(b.submit("boom"))  # taken by the worker, which blocks
            await asyncio.sleep(0.05)
            queued = [asyncio.create_task(b.submit(x)) for x in ("a", "b")]
            await asyncio.sleep(0.01)
            with pytest.raises(QueueFull):
                await b.submit("c")
            release.set()
            with pytest.raises(RuntimeError, match="graph failed"):
                await first
            return await asyncio.gather(*queued)
        finally:
            await b.stop()

    assert asyncio.run(scenario()) == ["a", "b"]


def _post(url, item_id, text, poster):
    with httpx.Client(base_url=url, timeout=60) as c:
        return c.post(
            "/v1/items", data={"item_id": item_id, "text": text}, files={"image": ("p.jpg", poster, "image/jpeg")}
        )


def test_concurrent_posts_are_batched_and_equal_to_unbatched(server, replica, movielens_dir):
    posters = [(movielens_dir / "posters" / f"{i}.jpg").read_bytes() for i in range(10, 22)]
    texts = [
        f"Movie number {i}, a story about {w}."
        for i, w in enumerate("ships trains wolves rivers kings robots gardens storms spies bakers maps owls".split())
    ]
    with ThreadPoolExecutor(12) as pool:
        batched = list(pool.map(lambda k: _post(server.url, f"mb-{k}", texts[k], posters[k]), range(12)))
    assert [r.status_code for r in batched] == [200] * 12
    sizes = [
        l
        for l in httpx.get(server.url + "/metrics").text.splitlines()
        if l.startswith('coldproxy_batch_size_bucket{graph="proxy",le="1.0"}')
        or l.startswith('coldproxy_batch_size_count{graph="proxy"}')
    ]
    le1, count = (float(l.split()[-1]) for l in sizes)
    assert count > le1  # at least one proxy run held more than one item
    with replica(micro_batching=False) as plain:
        for k in (0, 5, 11):
            alone = _post(plain.url, f"mb-plain-{k}", texts[k], posters[k])
            np.testing.assert_allclose(alone.json()["embedding"], batched[k].json()["embedding"], atol=1e-5)


def test_overload_answers_503_with_retry_after_never_500(replica, movielens_dir):
    poster = (movielens_dir / "posters" / "30.jpg").read_bytes()
    with replica(batch_queue_max=1, batch_workers=1, batch_max_size=1) as live:
        with ThreadPoolExecutor(24) as pool:
            rs = list(pool.map(lambda k: _post(live.url, f"ovl-{k}", "An overloaded evening.", poster), range(24)))
        codes = [r.status_code for r in rs]
        assert set(codes) <= {200, 503} and 503 in codes and 200 in codes, codes
        assert all(r.headers.get("Retry-After") == "1" for r in rs if r.status_code == 503)
        assert httpx.get(live.url + "/readyz").status_code == 200


def test_batch_posts_and_re_gating_go_through_the_same_back_pressure(replica, movielens_dir):
    """POST /v1/items:batch does not use the micro-batcher's queue; it is bounded all the same: past
    COLDPROXY_BATCH_QUEUE_MAX items waiting, a 503 with Retry-After, never a pile-up or a 500."""
    import base64

    poster = base64.b64encode((movielens_dir / "posters" / "30.jpg").read_bytes()).decode()
    with replica(batch_queue_max=4, batch_workers=1) as live:

        def post(k):
            items = [{"item_id": f"bp-{k}-{j}", "text": "A crowded night.", "image_base64": poster} for j in range(4)]
            return httpx.post(live.url + "/v1/items:batch", json={"items": items}, timeout=120)

        with ThreadPoolExecutor(12) as pool:
            rs = list(pool.map(post, range(12)))
        codes = [r.status_code for r in rs]
        assert set(codes) <= {200, 503} and 503 in codes and 200 in codes, codes
        assert all(
            r.headers.get("Retry-After") == "1" and "waiting for the model" in r.json()["detail"]
            for r in rs
            if r.status_code == 503
        )
        assert all(x["status"] == 200 for r in rs if r.status_code == 200 for x in r.json()["results"])


def test_a_failing_batch_is_retried_item_by_item_so_only_the_bad_item_fails():
    calls = []

    def infer(batch):
        calls.append(list(batch))
        if "boom" in batch:
            raise RuntimeError("graph failed")
        return [x.upper() for x in batch]

    async def scenario():
        b = MicroBatcher(infer, Metrics(), max_batch=8, max_wait_s=0.05, max_queue=100, workers=1)
        b.start()
        await asyncio.sleep(0.01)
        try:
            return await asyncio.gather(*(b.submit(x) for x in ("a", "boom", "b")), return_exceptions=True)
        finally:
            await b.stop()

    a, boom, b = asyncio.run(scenario())
    assert (a, b) == ("A", "B") and isinstance(boom, RuntimeError)
    assert calls[0] == ["a", "boom", "b"] and ["boom"] in calls[1:]


def test_every_submit_ends_on_a_stop_or_a_deadline_and_a_dead_worker_is_reported():
    from coldproxy.errors import Unavailable

    release = threading.Event()

    def slow(batch):
        release.wait(5)
        return batch

    class Crash(BaseException):
        pass

    async def crash(fn, items):
        raise Crash("Error 111 connecting to 10.0.0.5:6379")  # a raw message may hold an address

    async def scenario():
        b = MicroBatcher(slow, Metrics(), max_batch=1, max_wait_s=0.0, max_queue=10, workers=1, deadline_s=0.2)
        b.start()
        t = time.perf_counter()
        with pytest.raises(Unavailable, match="within 0.2 s"):
            await b.submit("late")  # the model is stuck: answered within the deadline anyway
        waited = time.perf_counter() - t
        in_flight = asyncio.create_task(b.submit("x"))
        await asyncio.sleep(0.05)
        await b.stop()  # a stop mid-batch answers the batch instead of stranding it
        with pytest.raises(QueueFull):
            await asyncio.wait_for(in_flight, 1)
        with pytest.raises(QueueFull):
            await b.submit("after stop")
        release.set()
        dying = MicroBatcher(
            slow, Metrics(), max_batch=1, max_wait_s=0.0, max_queue=10, workers=1, deadline_s=0.5, run=crash
        )
        dying.start()
        with pytest.raises(Unavailable):
            await dying.submit("y")
        assert not dying.healthy and "Crash" in dying.dead
        with pytest.raises(Unavailable, match="not running"):
            await dying.submit("z")
        await dying.stop()
        return waited

    assert asyncio.run(scenario()) < 1.0


def test_healthz_fails_when_a_batch_worker_died(tiny_package_dir, redis_prefix):
    from coldproxy.config import ServiceSettings
    from tests.conftest import REDIS_URL, LiveServer, _free_port

    class Crash(BaseException):
        pass

    async def crash(fn, items):
        raise Crash("Error 111 connecting to 10.0.0.5:6379")  # a raw message may hold an address

    settings = ServiceSettings(
        package_dir=tiny_package_dir,
        redis_url=REDIS_URL,
        redis_prefix=f"{redis_prefix}:dead",
        port=_free_port(),
        bundle_package_dir=None,
        batch_workers=1,
        batch_deadline_s=1.0,
    )
    with LiveServer(settings) as live, httpx.Client(base_url=live.url, timeout=30) as c:
        assert c.get("/healthz").status_code == 200
        live.app.state.coldproxy.serving.batcher.run = crash  # what a bug in the loop would do to the worker
        r = c.post("/v1/items", json={"item_id": "dies", "text": "x"})
        assert r.status_code == 503 and r.headers["Retry-After"] == "1"
        health = c.get("/healthz")
        assert health.status_code == 503 and "Crash" in health.json()["detail"]
        assert "10.0.0.5" not in health.text  # anonymous answers carry no store addresses
        # at once, not at the deadline
        assert c.post("/v1/items", json={"item_id": "dies-2", "text": "x"}).status_code == 503


def test_decoded_image_bytes_in_flight_stay_within_the_budget():
    from service.engine.decode_budget import DecodeBudget

    async def scenario():
        budget = DecodeBudget(max_bytes=100)
        peak, order = 0, []

        async def decode(name, pixels):
            nonlocal peak
            async with budget.reserve(pixels):
                peak = max(peak, budget.in_flight)
                order.append(f"start {name}")
                await asyncio.sleep(0.05)
                order.append(f"end {name}")

        await asyncio.gather(decode("a", 60), decode("b", 60), decode("c", 30), decode("huge", 500))
        return peak, order, budget.in_flight

    peak, order, left = asyncio.run(scenario())
    assert left == 0 and order.index("end a") < order.index("start b")  # b waited for a's bytes
    assert peak <= 500 and "start huge" in order  # an image alone always passes
    assert all(
        order.index(f"end {x}") < order.index("start huge") or order.index("end huge") < order.index(f"start {x}")
        for x in "abc"
    )  # the huge one decoded alone


def test_a_decode_waits_for_the_budget_only_so_long():
    from coldproxy.errors import QueueFull
    from service.engine.decode_budget import DecodeBudget

    async def scenario():
        budget = DecodeBudget(max_bytes=100, wait_s=0.2)

        async def hold():
            async with budget.reserve(80):
                await asyncio.sleep(1.0)

        holder = asyncio.create_task(hold())
        await asyncio.sleep(0.05)
        t = time.perf_counter()
        try:
            async with budget.reserve(50):
                pass
        except QueueFull as exc:
            waited, status, headers = time.perf_counter() - t, status_of(exc), headers_of(exc)
        await holder
        async with budget.reserve(50):  # free again
            pass
        return waited, status, headers, budget.in_flight

    waited, status, headers, left = asyncio.run(scenario())
    assert 0.15 < waited < 0.9 and status == 503 and headers["Retry-After"] and left == 0
