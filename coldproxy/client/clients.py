"""``Client`` (sync) and ``AsyncClient``: the routes of ``calls.Api`` sent with httpx, with retries."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from typing import Any

import httpx

from coldproxy.client.calls import Api, Call
from coldproxy.client.http import Retry, auth_headers, no_answer, request_args, result

DEFAULT_URL = "http://127.0.0.1:8000"


def settings(base_url: str | None, api_key: str | None) -> tuple[str, str | None]:
    """The service's URL and key: as given, else ``COLDPROXY_URL`` and ``COLDPROXY_API_KEY``."""
    return base_url or os.environ.get("COLDPROXY_URL", DEFAULT_URL), api_key or os.environ.get("COLDPROXY_API_KEY")


class Client(Api):
    """A coldproxy service, called synchronously. ``with Client(url, api_key=...) as cp: cp.post_item(...)``"""

    def __init__(
        self,
        base_url: str | None = None,
        *,
        api_key: str | None = None,
        timeout: float = 30.0,
        retry: Retry = Retry(),
        **http_options,
    ):
        """``http_options`` go to ``httpx.Client`` (``limits``, ``verify``, ``transport``, ...)."""
        url, key = settings(base_url, api_key)
        self.retry = retry
        self.http = httpx.Client(base_url=url, timeout=timeout, headers=auth_headers(key), **http_options)

    def _send(self, call: Call):
        attempt = 0
        while True:
            try:
                response = self.http.request(call.method, call.path, **request_args(call))
            except httpx.TransportError as exc:
                wait = self.retry.after(call, attempt, None)
                if wait is None:
                    raise no_answer(call, exc) from exc
            else:
                wait = self.retry.after(call, attempt, response)
                if wait is None:
                    return result(call, response)
            time.sleep(wait)
            attempt += 1

    def _send_all(self, calls: list[Call], combine: Callable[[list], Any]):
        return combine([self._send(c) for c in calls])

    def ready(self) -> bool:
        """Whether ``/readyz`` answers 200 (a package loaded), without retries."""
        try:
            return self.http.get("/readyz").status_code == 200
        except httpx.TransportError:
            return False

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class AsyncClient(Api):
    """A coldproxy service, called from asyncio: the same methods as ``Client``, each awaited.
    ``async with AsyncClient(url) as cp: await cp.rank([...], user_id="42")``"""

    def __init__(
        self,
        base_url: str | None = None,
        *,
        api_key: str | None = None,
        timeout: float = 30.0,
        retry: Retry = Retry(),
        **http_options,
    ):
        url, key = settings(base_url, api_key)
        self.retry = retry
        self.http = httpx.AsyncClient(base_url=url, timeout=timeout, headers=auth_headers(key), **http_options)

    async def _send(self, call: Call):
        attempt = 0
        while True:
            try:
                response = await self.http.request(call.method, call.path, **request_args(call))
            except httpx.TransportError as exc:
                wait = self.retry.after(call, attempt, None)
                if wait is None:
                    raise no_answer(call, exc) from exc
            else:
                wait = self.retry.after(call, attempt, response)
                if wait is None:
                    return result(call, response)
            await asyncio.sleep(wait)
            attempt += 1

    async def _send_all(self, calls: list[Call], combine: Callable[[list], Any]):
        return combine([await self._send(c) for c in calls])

    async def ready(self) -> bool:
        try:
            return (await self.http.get("/readyz")).status_code == 200
        except httpx.TransportError:
            return False

    async def aclose(self) -> None:
        await self.http.aclose()

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.aclose()
