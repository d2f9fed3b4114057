"""``ServiceSettings``: what ``coldproxy serve`` reads (``COLDPROXY_*``), one class per concern: the packages and
Redis, listening and keys, request limits, batching, ONNX Runtime, reads and the index, rollouts. The variables stay
flat (``COLDPROXY_MAX_K``); the classes group them for people and for ``docs/configuration.md``."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from coldproxy.config.base import MEASURED, REPO_ROOT, usable_cores
from coldproxy.limits import MAX_BATCH, MAX_HISTORY, MAX_LIST


class StoreSettings(BaseSettings):
    """The packages served and the Redis store"""

    package_dir: Path = Field(REPO_ROOT / "artifacts" / "package",
                              description="the model package served (COLDPROXY_BUNDLE_DIR: its deprecated name)",
                              validation_alias=AliasChoices("package_dir", "COLDPROXY_PACKAGE_DIR",
                                                            "COLDPROXY_BUNDLE_DIR"))
    bundle_package_dir: Path | None = Field(
        REPO_ROOT / "artifacts" / "bundle_package",
        validation_alias=AliasChoices("bundle_package_dir", "COLDPROXY_BUNDLES_PACKAGE_DIR",
                                      "COLDPROXY_BUNDLE_PACKAGE_DIR", "COLDPROXY_BUNDLE_RECOMMENDER_DIR"),
        description="bundle model package (`coldproxy train-bundles` writes it to the same variable); served under "
                    "/v1/bundles when the directory exists (a directory that is there but invalid stops start-up); "
                    "empty: no bundles. COLDPROXY_BUNDLE_PACKAGE_DIR and COLDPROXY_BUNDLE_RECOMMENDER_DIR, its old "
                    "names, are deprecated")
    redis_url: str = Field("redis://127.0.0.1:6379/0",
                           validation_alias=AliasChoices("REDIS_URL", "COLDPROXY_REDIS_URL", "redis_url"),
                           description="the Redis the proxies, kept features and events live in")
    redis_prefix: str = Field("coldproxy", description="prefix of every key this deployment writes")
    redis_cluster: bool = Field(False, description="REDIS_URL names a node of a Redis Cluster: keys are partitioned "
                                "by hash tags (service/storage/cluster.py)")
    redis_cluster_partitions: int = Field(16, ge=1, le=16384, description="partitions of each key family on a "
                                          "cluster (spread over its masters by their hash slots)")
    sync_stream_maxlen: int = Field(100_000, ge=100, description="entries kept (about) in each catalogue's event "
                                    "stream; a replica further behind reloads the whole set from Redis")
    allow_memory_store: bool = Field(False, description="fall back to an in-process store without Redis")
    keep_features: Literal["float16", "float32", "off"] = Field(
        "float16", description="keep each POSTed item's content features (the encoders' outputs) in Redis, so a new "
        "model package with the same encoders re-embeds every stored item (10.3 KB per item as float16, 20.6 KB as "
        "float32, for the MiniLM + EfficientNet encoders); off: a new package starts with no new items")


class AccessSettings(BaseSettings):
    """Listening, API keys and rate limits"""

    host: str = Field("127.0.0.1", description="address `serve` listens on; beyond loopback it needs API keys")
    port: int = Field(8000, description="port `serve` listens on")
    api_key: str | None = Field(None, description="an API key; when any key is set, writes need one")
    api_keys: list[str] = Field(default_factory=list, description="more API keys (JSON list in the env var)")
    api_keys_file: Path | None = Field(None,
                                       description="file of API keys, `name:key` per line; re-read when it changes")
    admin_api_keys: list[str] = Field(default_factory=list, description="keys for the admin routes (POST "
                                      "/v1/admin/reload); they also pass where a write key does. With any key "
                                      "configured, admin routes need one of these")
    admin_api_keys_file: Path | None = Field(None, description="file of admin keys, `name:key` per line; re-read "
                                             "when it changes")
    allow_anonymous_writes: bool = Field(False, description="serve writes without API keys on a non-loopback "
                                         "address; off, such a service refuses to start")
    allowed_hosts: list[str] = Field(default_factory=list, description="Host names a keyless service takes writes "
                                     "under, besides loopback's and COLDPROXY_HOST's")
    auth_reads: bool = Field(False, description="also require an API key on read endpoints")
    rate_limit_rps: float = Field(0.0, description="per-client requests/s on /v1 routes (0 = no limit); per replica")
    rate_limit_burst: int = Field(20, description="requests a client may send at once before the rate applies")
    shutdown_grace_s: float = Field(20.0, gt=0, description="on SIGTERM: stop accepting, then wait up to this long for "
                                    "requests in flight to finish (keep it under the pod's termination grace period)")
    access_log: bool = Field(False, description="uvicorn's access log, a line per request (off: /metrics counts "
                             f"requests by route and status; the line costs the event loop time: {MEASURED})")
    gc_freeze: bool = Field(True, description="after start-up, gc.freeze: full collections skip the loaded package")


class LimitSettings(BaseSettings):
    """Limits on what a request may carry"""

    max_request_bytes: int = Field(8 * 1024 * 1024, description="largest request body (POST /v1/items, its image); "
                                   "JSON routes have smaller limits, from their settings (service/api/limits.py)")
    max_header_bytes: int = Field(16 * 1024, ge=1024, description="a request's headers, all together: 431 past it")
    max_url_bytes: int = Field(8 * 1024, ge=256, description="a request's URL (path and query): past it, 414")
    max_connections: int = Field(512, ge=1, description="connections, and requests in flight: past it a new "
                                 "connection closes the oldest idle one (503 when none is idle), a request gets 503")
    max_connections_per_client: int = Field(256, ge=1, description="connections from one client address: past it "
                                            "the address's oldest idle one is closed (503 when none is idle); behind "
                                            "a proxy, every client shares the proxy's address")
    max_probes_in_flight: int = Field(16, ge=1, description="/healthz and /readyz requests in flight: kept out of "
                                      "max_connections so that a full replica still answers its probes")
    header_timeout_s: float = Field(10.0, gt=0, description="a request's line and headers must be in within this "
                                    "many seconds of the connection or the request's first byte: 408")
    body_timeout_s: float = Field(60.0, gt=0, description="a request body must be in within this many seconds: 408")
    max_image_pixels: int = Field(40_000_000,
                                  description="largest image accepted, in pixels (a decompression-bomb guard)")
    max_decode_bytes: int = Field(512 * 1024 * 1024, description="decoded image bytes in flight (each image's peak, "
                                  "from its header: coldproxy.preprocess.image_cost); further decodes wait")
    decode_wait_s: float = Field(10.0, gt=0, description="an image's wait for the decode budget before a 503")
    max_text_chars: int = Field(10_000, description="longest item text accepted")
    max_batch_items: int = Field(64, ge=1, le=MAX_BATCH, description="items per POST /v1/items:batch")
    max_batch_bytes: int = Field(64 * 1024 * 1024, description="largest POST /v1/items:batch body")
    max_candidates: int = Field(10_000, ge=1, le=MAX_LIST, description="candidates per rank request")
    max_user_norm: float | None = Field(None, gt=0, description="largest norm of a user_embedding a client may send; "
                                        "default: vector_norm_slack x the largest norm among the package's users (its "
                                        "warm items' when it has none); none in a cosine space (made unit-length)")
    vector_norm_slack: float = Field(1.5, ge=1.0, description="how far past the package's own vectors a client's "
                                     "user_embedding may reach (see max_user_norm); the recommender's item vectors "
                                     "(PUT /v1/items:id-embeddings) are bounded by the largest warm norm itself")
    max_id_vectors: int = Field(1000, ge=1, le=MAX_LIST, description="item vectors per PUT /v1/items:id-embeddings")
    id_sync_min_anchors: int = Field(3, ge=1, description="PUT /v1/items:id-embeddings: with at least this many warm "
                                     "items in one request, their vectors are checked against the served ones")
    id_sync_min_cosine: float = Field(0.3, ge=-1.0, le=1.0, description="... and their mean cosine to the served "
                                      "vectors must reach this, else 409 and nothing stored (vectors of another "
                                      "space of the same dimension: about 0)")
    max_k: int = Field(1000, description="largest k of a recommendation")
    max_bundle_members: int = Field(1000, ge=1, le=MAX_LIST, description="member items per POST /v1/bundles")


class BatchingSettings(BaseSettings):
    """Micro-batching of POSTed items through the graphs"""

    micro_batching: bool = Field(True, description="batch concurrent POST /v1/items through the graphs")
    batch_max_size: int = Field(32, description="largest micro-batch")
    batch_max_wait_ms: float = Field(5.0, description="how long a batch waits to fill once its first item is in, "
                                     "while every other batch worker is busy (with one idle, it runs at once)")
    batch_queue_max: int = Field(256, description="items waiting for the model before POSTs get 503")
    batch_deadline_s: float = Field(30.0, gt=0, description="a POST waiting longer than this for the model gets a 503")
    batch_workers: int = Field(2, description="micro-batches run concurrently")
    pad_image_batches: Literal["auto", "on", "off"] = Field("auto", description="run the image encoder at power-of-two "
        "batch sizes, one session per size, each warmed up at start-up; auto: on CUDA, where cuDNN rebuilds its plans "
        f"whenever a session's input shape changes ({MEASURED})")


class RuntimeSettings(BaseSettings):
    """ONNX Runtime"""

    ort_intra_threads: int = Field(0, description="ONNX Runtime threads per graph call; 0: the cores shared out among "
                                   "the batches in flight (cores // batch_workers, at least 1), so concurrent batches "
                                   "do not oversubscribe the CPU")
    ort_graph_optimization: Literal["disable", "basic", "extended",
                                    "all"] = Field("all", description="ONNX Runtime graph optimisation level")
    ort_cpu_mem_arena: bool = Field(True, description="ONNX Runtime CPU allocator arena")
    ort_mem_pattern: bool = Field(True, description="ONNX Runtime memory-pattern planning for repeated shapes")
    ort_providers: list[str] | None = Field(None,
                                            description="ONNX Runtime providers; default: CUDA if present, else CPU")
    ort_cuda_conv_algo_search: Literal["EXHAUSTIVE", "HEURISTIC", "DEFAULT"] = Field(
        "HEURISTIC", description="CUDA provider: how cuDNN picks a convolution algorithm for each new batch shape")
    ort_cuda_tf32: bool = Field(False, description="CUDA provider: TF32 matrix products (vectors drift from the "
                                "CPU's that export checked)")


class ReadSettings(BaseSettings):
    """Reads, the index and recommendations"""

    local_reads: bool = Field(True, description="answer GET / rank for cold items this replica has indexed from memory "
                              "(kept in step with Redis by its event stream); off: every cold read goes to Redis")
    max_store_lookups: int = Field(256, ge=0, description="with local_reads: IDs of a request the index lacks that are "
                                   "looked up in Redis (another replica's write of an instant ago); 0: all")
    index: Literal["flat", "hnsw"] = Field("flat", description="recommendations' FAISS index: exact (flat), or "
                                           "HNSW (approximate, for catalogues of millions; bench/scale.py), built in "
                                           "the background after start-up while the exact index serves")
    hnsw_m: int = Field(32, ge=4, description="HNSW links per node")
    hnsw_ef_construction: int = Field(40, ge=8, description="HNSW candidate list while inserting (measured: "
                                      "docs/results.md, Catalogue size)")
    hnsw_ef_search: int = Field(512, ge=8, description="HNSW candidate list while searching, at least k (recall and "
                                "latency measured: docs/results.md, Catalogue size); raise it for catalogues of "
                                "several millions: the 5M row there ran with 1024")
    hnsw_compact_share: float = Field(0.2, gt=0.0, le=1.0, description="HNSW: rebuilt in the background once "
                                      "overwritten items' stale nodes pass this share of it")
    faiss_threads: int = Field(1, description="OpenMP threads per FAISS search, set on every thread that searches (the "
                               "event loop's: top-k; the graph threads': anchors). One query per request or a "
                               "micro-batch of them: more threads only spin against each other and the encoders")
    user_history: int = Field(1000, ge=0, le=MAX_HISTORY, description="items kept per user (the newest) from "
                              "POST /v1/users/{id}/interactions, left out of their recommendations with exclude_seen; "
                              "0: off")
    user_history_ttl_s: float = Field(30 * 86400.0, gt=0,
                                      description="a user's kept items expire this long after the last")
    user_history_max_users: int = Field(2000, ge=1, description="users with kept items, across replicas: past it the "
                                        "user who posted least recently is forgotten. Redis holds up to about this x "
                                        "user_history x 200 bytes (IDs of 128 characters): raise it with Redis")
    cold_boost: float = Field(0.0, ge=0.0, le=10.0, description="exploration: a new item's served vector is "
                              "multiplied by 1 + cold_boost when it is POSTed (items stored before keep theirs; the "
                              "warm-up path re-gates without it), so it reaches more users' top k; 0 serves the "
                              "package's calibrated vector as it is. Shown in /v1/model")


class RolloutSettings(BaseSettings):
    """Reloads, rollouts and canaries"""

    reload_grace_s: float = Field(
        10.0, description="after a model package reload, seconds the old package stays open for in-flight requests")
    rollout_reembed: bool = Field(True, description="on POST /v1/admin/reload, re-embed every stored item for the new "
                                  "package (when its encoders are the serving one's) before switching to it")
    rollout_switch_fraction: float = Field(1.0, gt=0.0, le=1.0, description="switch once the new package holds this "
                                           "share of the stored items")
    rollout_wait_s: float = Field(30.0, ge=0.0, description="how long POST /v1/admin/reload waits for a rollout to "
                                  "switch before answering 202 (the rollout goes on; GET /v1/model shows it)")
    rollout_keep_old_s: float = Field(86400.0, ge=0.0, description="after a switch, the old version's keys expire "
                                      "after this many seconds (replicas not yet reloaded still read them); 0: keep")
    reembed_batch: int = Field(256, ge=1, description="items per graph call when re-embedding stored items")
    embed_image_roots: list[Path] = Field(default_factory=list, description="coldproxy embed: directories a "
                                          "catalogue's local image paths may point into, besides the catalogue's own")
    embed_image_schemes: list[str] = Field(["s3", "gs", "hdfs"], description="coldproxy embed: URI schemes a "
                                           "catalogue's images may be read from besides file:// (under the roots)")
    candidate_package_dir: Path | None = Field(None, description="a second model package run in shadow beside the "
                                               "served one: every POST is embedded and stored for it too, and stored "
                                               "items are backfilled, but it is not served (except to canary users)")
    canary_fraction: float = Field(0.0, ge=0.0, le=1.0, description="share of users (sticky, by a hash of the ID) "
                                   "whose rank and recommend requests the candidate answers once it is backfilled")


class ServiceSettings(StoreSettings, AccessSettings, LimitSettings, BatchingSettings, RuntimeSettings, ReadSettings,
                      RolloutSettings):
    """Everything ``coldproxy serve`` reads."""

    model_config = SettingsConfigDict(env_prefix="COLDPROXY_", env_file=".env", extra="ignore", populate_by_name=True)

    @field_validator("bundle_package_dir", "candidate_package_dir", mode="before")
    @classmethod
    def _empty_is_none(cls, value):
        """``COLDPROXY_BUNDLES_PACKAGE_DIR=`` (empty) means no bundle recommender, not the current directory
        (and an empty ``COLDPROXY_CANDIDATE_PACKAGE_DIR`` no candidate)."""
        return None if isinstance(value, str) and not value.strip() else value

    def index_options(self) -> dict:
        """Keyword arguments of ``service.storage.index.ItemIndex``."""
        return {"kind": self.index, "hnsw_m": self.hnsw_m, "hnsw_ef_construction": self.hnsw_ef_construction,
                "hnsw_ef_search": self.hnsw_ef_search, "compact_share": self.hnsw_compact_share}

    def ort_options(self) -> dict:
        """Keyword arguments of ``coldproxy.ort.make_session`` for every graph the service runs."""
        threads = self.ort_intra_threads or max(1, usable_cores() // max(1, self.batch_workers))
        return {"providers": self.ort_providers, "intra_threads": threads,
                "graph_optimization": self.ort_graph_optimization, "cpu_mem_arena": self.ort_cpu_mem_arena,
                "mem_pattern": self.ort_mem_pattern, "cuda_conv_algo_search": self.ort_cuda_conv_algo_search,
                "cuda_tf32": self.ort_cuda_tf32}
