"""One error vocabulary: every failure coldproxy reports is a ``ColdproxyError`` carrying its HTTP
status, a ``detail`` for the client (a message, or a list/dict for structured ones) and any headers
(``Retry-After``). Domain code raises these; the service registers one handler that turns any of them
into ``{"detail": ...}`` with that status, so no module below the routes knows about HTTP types.
"""

from __future__ import annotations


class ColdproxyError(Exception):
    status = 500

    def __init__(self, detail: str | list | dict, headers: dict[str, str] | None = None):
        super().__init__(detail if isinstance(detail, str) else str(detail))
        self.detail, self.headers = detail, headers


class BadRequest(ColdproxyError):
    status = 400


class Unauthorized(ColdproxyError):
    status = 401


class Forbidden(ColdproxyError):
    status = 403


class NotFound(ColdproxyError):
    status = 404


class Conflict(ColdproxyError):
    status = 409


class TooLarge(ColdproxyError):
    status = 413


class UnsupportedMediaType(ColdproxyError):
    status = 415


class InvalidInput(ColdproxyError):
    status = 422


class RateLimited(ColdproxyError):
    status = 429

    def __init__(self, detail: str, retry_after: str):
        super().__init__(detail, {"Retry-After": retry_after})


class Unavailable(ColdproxyError):
    """Try again shortly: 503 with ``Retry-After`` (1 s unless said)."""

    status = 503

    def __init__(self, detail: str, retry_after_s: int = 1):
        super().__init__(detail, {"Retry-After": str(max(1, int(retry_after_s)))})


class StoreUnavailable(Unavailable):
    """Redis did not answer, or a write was interrupted before it landed. Clients get a fixed message;
    the ``reason`` (a Redis error, an address) is for the logs only."""

    def __init__(self, reason: str):
        super().__init__("store unavailable; retry shortly")
        self.reason = reason

    def __str__(self) -> str:
        return f"store unavailable: {self.reason}"


class QueueFull(Unavailable):
    """The micro-batcher's queue is full: the replica is overloaded."""

    def __init__(self, reason: str):
        super().__init__(f"overloaded: {reason}")


class NotReady(Unavailable):
    """No model package is loaded yet."""


class InsecureSettings(ColdproxyError):
    """Start-up: the settings would expose writes to anyone who can reach the port."""


class ParityError(ColdproxyError):
    """Export: a graph does not reproduce its torch module within the tolerance (the package is refused)."""


class PackageError(InvalidInput):
    """A model package directory is missing, incomplete, tampered with or inconsistent."""


class ImageError(InvalidInput, ValueError):
    """The bytes are not an image we accept (corrupt, truncated, wrong format or too large)."""


class UnknownMembers(InvalidInput, ValueError):
    """A bundle names member items the bundle model package does not hold."""

    def __init__(self, unknown: list[str], package_version: str = ""):
        of = f" to bundle recommender {package_version}" if package_version else ""
        super().__init__({"msg": f"{len(unknown)} member item(s) unknown{of}", "unknown_item_ids": unknown})
        self.unknown = unknown


def public_reason(exc: BaseException) -> str:
    """What an answer anyone may read says about ``exc``: a ``ColdproxyError``'s client detail (a store error's fixed
    message, never its reason), else only the exception's type -- a raw message can hold a store's address."""
    if isinstance(exc, ColdproxyError):
        return exc.detail if isinstance(exc.detail, str) else str(exc.detail)
    return f"{type(exc).__name__} (see the service log)"
