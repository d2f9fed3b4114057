"""One error vocabulary, without HTTP: every failure coldproxy reports is a ``ColdproxyError`` of one of the kinds
below, with a ``detail`` for the client (a message, or a list/dict for structured ones) and, for the kinds that ask a
client to come back, ``retry_after`` (seconds). Domain code raises these kinds, and offline code and the CLI match on
them; the service maps each kind to an HTTP status in one place (``service/api/errors.py``), as
text-embeddings-inference maps its core errors at the router.
"""

from __future__ import annotations


class ColdproxyError(Exception):
    """A failure of coldproxy's own; one of the kinds below says what kind (the base: an internal one)."""

    retry_after: str | None = None  # seconds after which trying again may succeed

    def __init__(self, detail: str | list | dict):
        super().__init__(detail if isinstance(detail, str) else str(detail))
        self.detail = detail


class BadRequest(ColdproxyError):
    """The request is malformed (a body that is not what the route takes)."""


class Unauthorized(ColdproxyError):
    """No valid key was presented."""


class Forbidden(ColdproxyError):
    """The key presented may not do this (a scope it lacks, a cross-site write)."""


class NotFound(ColdproxyError):
    """No such item, bundle, user or package."""


class Conflict(ColdproxyError):
    """It exists already, or contradicts what is served (another ID space, a package being switched)."""


class TooLarge(ColdproxyError):
    """Past a size limit (a body, a batch, a list, an image)."""


class UnsupportedMediaType(ColdproxyError):
    """A body of a type the route does not take."""


class TimedOut(ColdproxyError):
    """The client did not finish sending its request in time."""


class InvalidInput(ColdproxyError):
    """Well-formed but refused: a value out of bounds, an unknown ID where one must be known."""


class RateLimited(ColdproxyError):
    """Too many requests from this client; ``retry_after`` says when to come back."""

    def __init__(self, detail: str, retry_after: str):
        super().__init__(detail)
        self.retry_after = retry_after


class Unavailable(ColdproxyError):
    """Try again shortly (after ``retry_after``: 1 s unless said)."""

    def __init__(self, detail: str, retry_after_s: int = 1):
        super().__init__(detail)
        self.retry_after = str(max(1, int(retry_after_s)))


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
