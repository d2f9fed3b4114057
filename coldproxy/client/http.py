"""How a call goes over the wire, for both clients: the auth header, when an answer is retried and after how
long (``Retry-After`` first, else exponential backoff with jitter), and the one exception a refusal raises."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime

import httpx
import orjson

from coldproxy.client.calls import Call

ALWAYS_RETRIED = frozenset({429, 503})  # the service did not do it (or did, under an Idempotency-Key): try again
RETRIED_IF_RESENDABLE = frozenset({502, 504})  # from a proxy in front: the request may or may not have landed


class ServiceError(Exception):
    """The service refused a request (``status`` 4xx/5xx, ``detail`` its message or structured detail), or gave
    no answer after the retries (``status`` None, ``detail`` the transport error)."""

    def __init__(self, status: int | None, detail, method: str, path: str, headers: dict | None = None):
        self.status, self.detail, self.method, self.path = status, detail, method, path
        self.headers = headers or {}
        super().__init__(f"{method} {path}: {status if status is not None else 'no answer'}: {detail}")

    @classmethod
    def of(cls, call: Call, response: httpx.Response) -> "ServiceError":
        try:
            body = response.json()
            detail = body.get("detail", body) if isinstance(body, dict) else body
        except ValueError:
            detail = response.text or response.reason_phrase
        return cls(response.status_code, detail, call.method, call.path, dict(response.headers))


@dataclass(frozen=True)
class Retry:
    """``attempts`` tries in all; between them the answer's ``Retry-After`` when it has one, else ``backoff_s``
    doubled each time, with jitter; never more than ``max_wait_s``."""

    attempts: int = 4
    backoff_s: float = 0.25
    max_wait_s: float = 10.0

    def after(self, call: Call, attempt: int, response: httpx.Response | None) -> float | None:
        """Seconds to wait before the next try, or None to stop here. ``response`` None: no answer came."""
        if attempt + 1 >= self.attempts:
            return None
        status = None if response is None else response.status_code
        if status not in ALWAYS_RETRIED and not (call.resend and (status is None or status in RETRIED_IF_RESENDABLE)):
            return None
        told = retry_after(response.headers.get("retry-after")) if response is not None else None
        wait = told if told is not None else self.backoff_s * 2**attempt * random.uniform(0.5, 1.0)
        return min(wait, self.max_wait_s)


def retry_after(value: str | None) -> float | None:
    """A ``Retry-After`` header's seconds (delta-seconds or an HTTP date), or None."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


def auth_headers(api_key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


def request_args(call: Call) -> dict:
    """httpx's arguments for a call; JSON encoded with orjson (several times faster than ``json.dumps`` for the
    1,000 IDs of a ranking)."""
    args = {"params": call.params, "headers": call.headers}
    if call.json is not None:
        args["content"] = orjson.dumps(call.json)
        args["headers"] = call.headers | {"content-type": "application/json"}
    if call.data is not None:
        args["data"] = call.data
    if call.files is not None:
        args["files"] = call.files
    return args


def result(call: Call, response: httpx.Response):
    """The typed body of a 2xx answer (None for a 204), else ``ServiceError``."""
    if response.status_code >= 400:
        raise ServiceError.of(call, response)
    return None if call.model is None else call.model.model_validate_json(response.content)


def no_answer(call: Call, exc: httpx.TransportError) -> ServiceError:
    return ServiceError(None, f"{type(exc).__name__}: {exc}", call.method, call.path)
