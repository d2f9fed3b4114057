"""API keys, per-client rate limits, and the keyless demo's same-site check.

Keys come from the settings (``api_key``, ``api_keys``) and from an optional file (``api_keys_file``:
one key per line, ``name:key`` or a bare key, ``#`` comments) — the form a Kubernetes Secret mounted
as a volume takes. The file is re-read when its modification time changes, so keys rotate without a
restart. Keys are compared in constant time, every configured key each time.

The rate limit is a token bucket per client: the API key's name when the request carries a valid
key, the client address otherwise. Buckets live in this process, so with N replicas a client gets
up to N times the configured rate in all; the limit protects a replica, not a global quota.
"""

from __future__ import annotations

import hmac
import logging
import math
import os
import time
from collections import OrderedDict
from pathlib import Path
from urllib.parse import urlsplit

from fastapi import Request

from coldproxy.config import ServiceSettings
from coldproxy.errors import Forbidden, InsecureSettings

log = logging.getLogger("coldproxy.auth")


MIN_KEY_LENGTH = 8
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def parse_keys(text: str, source: str) -> dict[str, str]:
    """``name:key`` or ``key`` per line -> {key: name}; blank lines and ``#`` comments skipped."""
    keys: dict[str, str] = {}
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, key = line.rpartition(":")
        if not sep:
            name, key = f"{source}#{n}", line
        key = key.strip()
        if len(key) < MIN_KEY_LENGTH:
            raise ValueError(f"{source} line {n}: API keys must be at least {MIN_KEY_LENGTH} characters")
        keys[key] = name.strip() or f"{source}#{n}"
    return keys


class KeyRing:
    """The configured API keys; ``enabled`` is False when none is configured."""

    def __init__(self, static: list[str], keys_file: Path | None, recheck_s: float = 1.0):
        short = [i for i, k in enumerate(static) if k and len(k) < MIN_KEY_LENGTH]
        if short:
            raise ValueError(f"API keys must be at least {MIN_KEY_LENGTH} characters (key #{short[0]} is not)")
        self.static = {k: f"key#{i}" for i, k in enumerate(static) if k}
        self.keys_file, self.recheck_s = keys_file, recheck_s
        self._file_keys: dict[str, str] = {}
        self._mtime: float | None = None
        self._checked = 0.0
        if keys_file is not None:
            self._reload_file(force=True)

    def _reload_file(self, force: bool = False) -> None:
        try:
            mtime = os.stat(self.keys_file).st_mtime
        except OSError as exc:
            if force:
                raise ValueError(f"api_keys_file {self.keys_file}: {exc}") from exc
            log.warning("api_keys_file %s unreadable (%s); keeping the keys loaded before", self.keys_file, exc)
            return
        if force or mtime != self._mtime:
            try:
                keys = parse_keys(Path(self.keys_file).read_text(), Path(self.keys_file).name)
                if not keys:  # fail closed: an emptied file must not turn authentication off
                    raise ValueError(f"api key file {self.keys_file} holds no keys")
                self._file_keys = keys
            except ValueError:
                if force:
                    raise
                log.exception("api_keys_file %s is invalid; keeping the keys loaded before", self.keys_file)
                return
            self._mtime = mtime
            log.info("loaded %d API keys from %s", len(self._file_keys), self.keys_file)

    def _keys(self) -> dict[str, str]:
        if self.keys_file is not None:
            now = time.monotonic()
            if now - self._checked >= self.recheck_s:
                self._checked = now
                self._reload_file()
        return self.static | self._file_keys

    @property
    def enabled(self) -> bool:
        return bool(self._keys())

    def identify(self, presented: str | None) -> str | None:
        """The key's name, or None. Compares against every key so timing says nothing about which."""
        candidate = (presented or "").encode()
        found = None
        for key, name in self._keys().items():
            if hmac.compare_digest(candidate, key.encode()):
                found = name
        return found


class RateLimiter:
    """Token buckets: ``rate`` requests/s sustained, ``burst`` at once, per client; LRU-bounded."""

    def __init__(self, rate: float, burst: int, max_clients: int = 100_000):
        self.rate, self.burst, self.max_clients = rate, max(burst, 1), max_clients
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def acquire(self, client: str, now: float | None = None) -> float:
        """0.0 when the request may go ahead, else the seconds until one token is back."""
        now = time.monotonic() if now is None else now
        tokens, last = self._buckets.pop(client, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - last) * self.rate)
        wait = 0.0
        if tokens >= 1.0:
            tokens -= 1.0
        else:
            wait = (1.0 - tokens) / self.rate
        self._buckets[client] = (tokens, now)
        while len(self._buckets) > self.max_clients:
            self._buckets.popitem(last=False)
        return wait

    @staticmethod
    def retry_after(wait: float) -> str:
        return str(max(1, math.ceil(wait)))


def check_same_site(request: Request, settings: ServiceSettings) -> None:
    """The keyless loopback demo: a web page the user has open must not write to it. Browsers name a cross-site
    request's origin (``Origin``, ``Sec-Fetch-Site``): it must be this service itself, host and port (a page another
    local server serves, on another port, is another site); a DNS-rebinding page reaches loopback under its own host
    name, which the ``Host`` allow-list (loopback names, COLDPROXY_HOST, COLDPROXY_ALLOWED_HOSTS) refuses. 403."""
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        raise Forbidden(
            f"cross-site request refused (Sec-Fetch-Site: {site[:32]}): this service has no API keys, so "
            "it takes writes only from this machine's own clients"
        )
    allowed = LOOPBACK | {settings.host, *settings.allowed_hosts}
    origin, host = request.headers.get("origin"), request.headers.get("host", "")
    netloc = urlsplit(origin).netloc if origin is not None else None
    if netloc is not None and (host_name(netloc) not in allowed or netloc.lower() != host.strip().lower()):
        raise Forbidden(
            "cross-site request refused (Origin is not this service): this service has no API keys, so it "
            "takes writes only from this machine's own clients"
        )
    if host_name(host) not in allowed:
        raise Forbidden(
            "unknown Host: add it to COLDPROXY_ALLOWED_HOSTS (a keyless service answers only the names "
            "it is served under, against DNS rebinding)"
        )


def host_name(netloc: str) -> str:
    """``host[:port]`` or ``[v6]:port`` -> the host, lower-case."""
    netloc = netloc.strip().lower()
    if netloc.startswith("["):
        return netloc[1:].partition("]")[0]
    return netloc.rpartition(":")[0] if netloc.count(":") == 1 else netloc


def bearer(authorization: str | None) -> str | None:
    """The key of an ``Authorization: Bearer <key>`` header."""
    scheme, _, key = (authorization or "").partition(" ")
    return key.strip() or None if scheme.lower() == "bearer" else None


def check_exposure(settings: ServiceSettings, keys_configured: bool) -> None:
    """Safe by default: no service reachable beyond this machine takes anonymous writes unless told to."""
    if settings.host not in LOOPBACK and not keys_configured and not settings.allow_anonymous_writes:
        raise InsecureSettings(
            f"refusing to serve on {settings.host} without API keys: anyone who reaches the port could write items "
            "and reload the model. Set COLDPROXY_API_KEYS_FILE (and COLDPROXY_ADMIN_API_KEYS_FILE), or "
            "COLDPROXY_ALLOW_ANONYMOUS_WRITES=true to accept that"
        )
