"""Who may call ``coldproxy serve`` and how much one request may ask: ``AccessSettings`` (listening, API keys,
rate limits, shutdown) and ``LimitSettings`` (bodies, headers, connections, images, batches, vectors from clients),
two of the classes ``ServiceSettings`` is made of."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings

from coldproxy.config.base import MEASURED
from coldproxy.limits import MAX_BATCH, MAX_LIST


class AccessSettings(BaseSettings):
    """Listening, API keys and rate limits"""

    host: str = Field("127.0.0.1", description="address `serve` listens on; beyond loopback it needs API keys")
    port: int = Field(8000, description="port `serve` listens on")
    api_key: str | None = Field(None, description="an API key; when any key is set, writes need one")
    api_keys: list[str] = Field(default_factory=list, description="more API keys (JSON list in the env var)")
    api_keys_file: Path | None = Field(
        None, description="file of API keys, `name:key` per line; re-read when it changes"
    )
    admin_api_keys: list[str] = Field(
        default_factory=list,
        description="keys for the admin routes (POST "
        "/v1/admin/reload); they also pass where a write key does. With any key "
        "configured, admin routes need one of these",
    )
    admin_api_keys_file: Path | None = Field(
        None, description="file of admin keys, `name:key` per line; re-read when it changes"
    )
    allow_anonymous_writes: bool = Field(
        False,
        description="serve writes without API keys on a non-loopback address; off, such a service refuses to start",
    )
    allowed_hosts: list[str] = Field(
        default_factory=list,
        description="Host names a keyless service takes writes under, besides loopback's and COLDPROXY_HOST's",
    )
    auth_reads: bool = Field(False, description="also require an API key on read endpoints")
    rate_limit_rps: float = Field(0.0, description="per-client requests/s on /v1 routes (0 = no limit); per replica")
    rate_limit_burst: int = Field(20, description="requests a client may send at once before the rate applies")
    shutdown_grace_s: float = Field(
        20.0,
        gt=0,
        description="on SIGTERM: stop accepting, then wait up to this long for "
        "requests in flight to finish (keep it under the pod's termination grace period)",
    )
    access_log: bool = Field(
        False,
        description="uvicorn's access log, a line per request (off: /metrics counts "
        f"requests by route and status; the line costs the event loop time: {MEASURED})",
    )
    gc_freeze: bool = Field(True, description="after start-up, gc.freeze: full collections skip the loaded package")


class LimitSettings(BaseSettings):
    """Limits on what a request may carry"""

    max_request_bytes: int = Field(
        8 * 1024 * 1024,
        description="largest request body (POST /v1/items, its image); "
        "JSON routes have smaller limits, from their settings (service/api/limits.py)",
    )
    max_header_bytes: int = Field(16 * 1024, ge=1024, description="a request's headers, all together: 431 past it")
    max_url_bytes: int = Field(8 * 1024, ge=256, description="a request's URL (path and query): past it, 414")
    max_connections: int = Field(
        512,
        ge=1,
        description="connections, and requests in flight: past it a new "
        "connection closes the oldest idle one (503 when none is idle), a request gets 503",
    )
    max_connections_per_client: int = Field(
        256,
        ge=1,
        description="connections from one client address: past it "
        "the address's oldest idle one is closed (503 when none is idle); behind "
        "a proxy, every client shares the proxy's address",
    )
    max_probes_in_flight: int = Field(
        16,
        ge=1,
        description="/healthz and /readyz requests in flight: kept out of "
        "max_connections so that a full replica still answers its probes",
    )
    header_timeout_s: float = Field(
        10.0,
        gt=0,
        description="a request's line and headers must be in within this "
        "many seconds of the connection or the request's first byte: 408",
    )
    body_timeout_s: float = Field(60.0, gt=0, description="a request body must be in within this many seconds: 408")
    max_image_pixels: int = Field(
        40_000_000, description="largest image accepted, in pixels (a decompression-bomb guard)"
    )
    max_decode_bytes: int = Field(
        512 * 1024 * 1024,
        description="decoded image bytes in flight (each image's peak, "
        "from its header: coldproxy.preprocess.image_cost); further decodes wait",
    )
    decode_wait_s: float = Field(10.0, gt=0, description="an image's wait for the decode budget before a 503")
    max_text_chars: int = Field(10_000, description="longest item text accepted")
    max_batch_items: int = Field(64, ge=1, le=MAX_BATCH, description="items per POST /v1/items:batch")
    max_batch_bytes: int = Field(64 * 1024 * 1024, description="largest POST /v1/items:batch body")
    max_candidates: int = Field(10_000, ge=1, le=MAX_LIST, description="candidates per rank request")
    max_user_norm: float | None = Field(
        None,
        gt=0,
        description="largest norm of a user_embedding a client may send; "
        "default: vector_norm_slack x the largest norm among the package's users (its "
        "warm items' when it has none); none in a cosine space (made unit-length)",
    )
    vector_norm_slack: float = Field(
        1.5,
        ge=1.0,
        description="how far past the package's own vectors a client's "
        "user_embedding may reach (see max_user_norm); the recommender's item vectors "
        "(PUT /v1/items:id-embeddings) are bounded by the largest warm norm itself",
    )
    max_id_vectors: int = Field(1000, ge=1, le=MAX_LIST, description="item vectors per PUT /v1/items:id-embeddings")
    id_sync_min_anchors: int = Field(
        3,
        ge=1,
        description="PUT /v1/items:id-embeddings: with at least this many warm "
        "items in one request, their vectors are checked against the served ones",
    )
    id_sync_min_cosine: float = Field(
        0.3,
        ge=-1.0,
        le=1.0,
        description="... and their mean cosine to the served "
        "vectors must reach this, else 409 and nothing stored (vectors of another "
        "space of the same dimension: about 0)",
    )
    max_k: int = Field(1000, description="largest k of a recommendation")
    max_bundle_members: int = Field(1000, ge=1, le=MAX_LIST, description="member items per POST /v1/bundles")
