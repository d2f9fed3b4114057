"""``coldproxy.client`` against the live app on the tiny package (real HTTP, real Redis): every item route typed,
images as path, bytes or PIL image, idempotent retries, batches split and merged, one exception type with the
service's detail, the key as a Bearer header, 429s waited out as ``Retry-After`` says, and the async twin."""

from __future__ import annotations

import asyncio
import io
import time
import uuid

import httpx
import numpy as np
import pytest
from PIL import Image

from coldproxy.client import AsyncClient, Client, Item, Retry, ServiceError
from coldproxy.client.calls import Call
from coldproxy.client.http import retry_after
from coldproxy.protocol import BatchOut, EmbeddingOut, ItemOut, RankOut
from tests.conftest import LiveServer, _free_port
from tests.service.test_security import _settings

KEY = "client-key-123456"


def _image(seed: int) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 255, (40, 30, 3), dtype=np.uint8))


def _png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def _id() -> str:
    return f"cl-{uuid.uuid4().hex[:10]}"


@pytest.fixture()
def cp(tiny_server):
    with Client(tiny_server.url) as c:
        yield c


def test_items_are_posted_read_ranked_and_taken_down_typed(cp, tmp_path):
    image = _image(1)
    path = tmp_path / "poster.png"
    path.write_bytes(_png(image))
    by_pil, by_bytes, by_path = _id(), _id(), _id()
    out = cp.post_item(by_pil, text="a quiet thriller", image=image)
    assert isinstance(out, ItemOut) and out.item_id == by_pil and set(out.modalities) == {"text", "image"}
    same = [
        cp.post_item(by_bytes, text="a quiet thriller", image=_png(image)),
        cp.post_item(by_path, text="a quiet thriller", image=path),
    ]
    assert all(np.allclose(s.embedding, out.embedding, atol=1e-6) for s in same)
    got = cp.embedding(by_pil)
    assert isinstance(got, EmbeddingOut) and got.source == "proxy" and np.allclose(got.embedding, out.embedding)
    ranked = cp.rank([by_pil, "warm-0", "nope"], user_id="3")
    assert (
        isinstance(ranked, RankOut)
        and ranked.missing == ["nope"]
        and {s.item_id for s in ranked.scores} == {by_pil, "warm-0"}
    )
    by_vector = cp.rank([by_pil, "warm-0"], user_embedding=[0.1] * len(out.embedding))
    assert by_vector.user_id is None and len(by_vector.scores) == 2
    assert len(cp.recommend(user_id="3", k=3, only="new").items) == 3
    assert cp.recommend(user_id="3", k=50, exclude_ids=[by_pil]).items and by_pil not in {
        s.item_id for s in cp.recommend(user_id="3", k=50, exclude_ids=[by_pil]).items
    }
    assert cp.delete_item(by_pil) is None
    with pytest.raises(ServiceError) as gone:
        cp.embedding(by_pil)
    assert gone.value.status == 404 and by_pil in gone.value.detail
    with pytest.raises(ValueError, match="exactly one"):
        cp.rank(["warm-0"], user_id="3", user_embedding=[0.0])


def test_a_refusal_carries_the_services_status_and_detail(cp):
    item_id = _id()
    cp.post_item(item_id, text="first")
    with pytest.raises(ServiceError) as again:
        cp.post_item(item_id, text="second")
    assert again.value.status == 409 and "exists" in str(again.value.detail)
    with pytest.raises(ServiceError) as empty:
        cp.post_item(_id())
    assert empty.value.status == 422 and empty.value.method == "POST" and empty.value.path == "/v1/items"


def test_a_retried_post_with_the_same_key_gets_the_stored_item_back(cp):
    item_id, key = _id(), uuid.uuid4().hex
    first = cp.post_item(item_id, text="sent twice", idempotency_key=key)
    assert cp.post_item(item_id, text="sent twice", idempotency_key=key) == first


def test_a_batch_is_split_sent_and_merged_in_order(cp):
    ids = [_id() for _ in range(5)]
    items = [
        Item(ids[0], text="one"),
        {"item_id": ids[1], "image": _png(_image(2))},
        Item(ids[2]),
        Item(ids[3], text="four", image=_image(3)),
        Item(ids[4], text="five"),
    ]
    out = cp.post_items(items, batch_size=2)
    assert isinstance(out, BatchOut) and [r.item_id for r in out.results] == ids
    assert [r.status for r in out.results] == [200, 200, 422, 200, 200] and out.stored == 4
    assert "needs text" in str(out.results[2].detail)


def test_the_key_goes_as_a_bearer_header_and_429s_are_waited_out(tiny_package_dir, redis_prefix):
    settings = _settings(
        tiny_package_dir, f"{redis_prefix}:client", api_keys=[KEY], rate_limit_rps=2.0, rate_limit_burst=2
    )
    with LiveServer(settings) as live:
        with Client(live.url) as anonymous, pytest.raises(ServiceError) as refused:
            anonymous.post_item(_id(), text="no key")
        assert refused.value.status == 401
        with Client(live.url, api_key=KEY, retry=Retry(attempts=1)) as once:
            with pytest.raises(ServiceError) as limited:
                for _ in range(4):
                    once.model()
            assert limited.value.status == 429 and retry_after(limited.value.headers["retry-after"]) >= 1
        time.sleep(1.0)  # the bucket refills
        with Client(live.url, api_key=KEY) as patient:
            start = time.monotonic()
            versions = {patient.model().package_version for _ in range(4)}
            assert len(versions) == 1 and time.monotonic() - start >= 0.9  # at least one Retry-After waited


def test_no_answer_is_retried_for_resendable_calls_then_raised():
    calls = []
    with Client(f"http://127.0.0.1:{_free_port()}", retry=Retry(attempts=3, backoff_s=0.01)) as c:
        c.http.event_hooks["request"].append(calls.append)
        with pytest.raises(ServiceError) as down:
            c.model()
        assert down.value.status is None and "Connect" in down.value.detail and len(calls) == 3
        calls.clear()
        with pytest.raises(ServiceError):
            c.delete_item("x")  # a second DELETE could answer 404 for one that landed: sent once
        assert len(calls) == 1


def test_retry_policy():
    get, post = Call("GET", "/v1/model", None), Call("POST", "/v1/bundles", None, resend=False)
    policy = Retry(attempts=3, backoff_s=1.0, max_wait_s=5.0)
    answer = lambda status, **h: httpx.Response(status, headers=h)  # noqa: E731
    assert policy.after(get, 0, answer(503, **{"retry-after": "2"})) == 2.0
    assert policy.after(post, 0, answer(429, **{"retry-after": "60"})) == 5.0  # capped
    assert 0.5 <= policy.after(get, 0, answer(503)) <= 1.0 and 1.0 <= policy.after(get, 1, answer(503)) <= 2.0
    assert policy.after(get, 2, answer(503)) is None  # attempts spent
    assert policy.after(get, 0, answer(404)) is None and policy.after(get, 0, answer(500)) is None
    assert policy.after(post, 0, None) is None and policy.after(post, 0, answer(502)) is None
    assert policy.after(get, 0, None) is not None and policy.after(get, 0, answer(504)) is not None
    assert retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0 and retry_after("soon") is None


def test_the_async_client_does_the_same(tiny_server):
    async def run():
        async with AsyncClient(tiny_server.url) as cp:
            item_id = _id()
            posted = await cp.post_item(item_id, text="async", image=_image(4))
            got, ranked = await asyncio.gather(cp.embedding(item_id), cp.rank([item_id], user_id="3"))
            batch = await cp.post_items([Item(_id(), text="a"), Item(_id(), text="b")], batch_size=1)
            with pytest.raises(ServiceError) as missing:
                await cp.embedding("no-such-item")
            return posted, got, ranked, batch, missing.value, await cp.ready()

    posted, got, ranked, batch, missing, ready = asyncio.run(run())
    assert np.allclose(got.embedding, posted.embedding) and ranked.scores[0].item_id == posted.item_id
    assert batch.stored == 2 and missing.status == 404 and ready is True


def test_the_client_needs_no_training_stack():
    """The client is importable from the serving install: no torch, no numpy."""
    import subprocess
    import sys

    code = "import sys; from coldproxy.client import Client; print(sorted({'torch', 'numpy'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
