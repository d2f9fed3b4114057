"""``ServiceSettings``: what ``coldproxy serve`` reads (``COLDPROXY_*``), one class per concern: the packages and
Redis, listening and keys, request limits, batching, ONNX Runtime, reads and the index, rollouts. The variables stay
flat (``COLDPROXY_MAX_K``); the classes group them for people and for ``docs/configuration.md``."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from coldproxy.config.base import MEASURED, REPO_ROOT, usable_cores
from coldproxy.config.guards import AccessSettings, LimitSettings
from coldproxy.limits import MAX_HISTORY


class StoreSettings(BaseSettings):
    """The packages served and the Redis store"""

    package_dir: Path = Field(
        REPO_ROOT / "artifacts" / "package",
        description="the model package served (COLDPROXY_BUNDLE_DIR: its deprecated name)",
        validation_alias=AliasChoices("package_dir", "COLDPROXY_PACKAGE_DIR", "COLDPROXY_BUNDLE_DIR"),
    )
    bundle_package_dir: Path | None = Field(
        REPO_ROOT / "artifacts" / "bundle_package",
        validation_alias=AliasChoices(
            "bundle_package_dir",
            "COLDPROXY_BUNDLES_PACKAGE_DIR",
            "COLDPROXY_BUNDLE_PACKAGE_DIR",
            "COLDPROXY_BUNDLE_RECOMMENDER_DIR",
        ),
        description="bundle model package (`coldproxy train-bundles` writes it to the same variable); served under "
        "/v1/bundles when the directory exists (a directory that is there but invalid stops start-up); "
        "empty: no bundles. COLDPROXY_BUNDLE_PACKAGE_DIR and COLDPROXY_BUNDLE_RECOMMENDER_DIR, its old "
        "names, are deprecated",
    )
    redis_url: str = Field(
        "redis://127.0.0.1:6379/0",
        validation_alias=AliasChoices("REDIS_URL", "COLDPROXY_REDIS_URL", "redis_url"),
        description="the Redis the proxies, kept features and events live in",
    )
    redis_prefix: str = Field("coldproxy", description="prefix of every key this deployment writes")
    redis_cluster: bool = Field(
        False,
        description="REDIS_URL names a node of a Redis Cluster: keys are partitioned "
        "by hash tags (service/storage/cluster.py)",
    )
    redis_cluster_partitions: int = Field(
        16,
        ge=1,
        le=16384,
        description="partitions of each key family on a cluster (spread over its masters by their hash slots)",
    )
    sync_stream_maxlen: int = Field(
        100_000,
        ge=100,
        description="entries kept (about) in each catalogue's event "
        "stream; a replica further behind reloads the whole set from Redis",
    )
    allow_memory_store: bool = Field(False, description="fall back to an in-process store without Redis")
    keep_features: Literal["float16", "float32", "off"] = Field(
        "float16",
        description="keep each POSTed item's content features (the encoders' outputs) in Redis, so a new "
        "model package with the same encoders re-embeds every stored item (10.3 KB per item as float16, 20.6 KB as "
        "float32, for the MiniLM + EfficientNet encoders); off: a new package starts with no new items",
    )


class BatchingSettings(BaseSettings):
    """Micro-batching of POSTed items through the graphs"""

    micro_batching: bool = Field(True, description="batch concurrent POST /v1/items through the graphs")
    batch_max_size: int = Field(32, description="largest micro-batch")
    batch_max_wait_ms: float = Field(
        5.0,
        description="how long a batch waits to fill once its first item is in, "
        "while every other batch worker is busy (with one idle, it runs at once)",
    )
    batch_queue_max: int = Field(256, description="items waiting for the model before POSTs get 503")
    batch_deadline_s: float = Field(30.0, gt=0, description="a POST waiting longer than this for the model gets a 503")
    batch_workers: int = Field(2, description="micro-batches run concurrently")
    pad_image_batches: Literal["auto", "on", "off"] = Field(
        "auto",
        description="run the image encoder at power-of-two "
        "batch sizes, one session per size, each warmed up at start-up; auto: on CUDA, where cuDNN rebuilds its plans "
        f"whenever a session's input shape changes ({MEASURED})",
    )


class RuntimeSettings(BaseSettings):
    """ONNX Runtime"""

    ort_intra_threads: int = Field(
        0,
        description="ONNX Runtime threads per graph call; 0: the cores shared out among "
        "the batches in flight (cores // batch_workers, at least 1), so concurrent batches "
        "do not oversubscribe the CPU",
    )
    ort_graph_optimization: Literal["disable", "basic", "extended", "all"] = Field(
        "all", description="ONNX Runtime graph optimisation level"
    )
    ort_cpu_mem_arena: bool = Field(True, description="ONNX Runtime CPU allocator arena")
    ort_mem_pattern: bool = Field(True, description="ONNX Runtime memory-pattern planning for repeated shapes")
    ort_providers: list[str] | None = Field(
        None, description="ONNX Runtime providers; default: CUDA if present, else CPU"
    )
    ort_cuda_conv_algo_search: Literal["EXHAUSTIVE", "HEURISTIC", "DEFAULT"] = Field(
        "HEURISTIC", description="CUDA provider: how cuDNN picks a convolution algorithm for each new batch shape"
    )
    ort_cuda_tf32: bool = Field(
        False, description="CUDA provider: TF32 matrix products (vectors drift from the CPU's that export checked)"
    )


class ReadSettings(BaseSettings):
    """Reads, the index and recommendations"""

    local_reads: bool = Field(
        True,
        description="answer GET / rank for cold items this replica has indexed from memory "
        "(kept in step with Redis by its event stream); off: every cold read goes to Redis",
    )
    max_store_lookups: int = Field(
        256,
        ge=0,
        description="with local_reads: IDs of a request the index lacks that are "
        "looked up in Redis (another replica's write of an instant ago); 0: all",
    )
    index: Literal["flat", "hnsw"] = Field(
        "flat",
        description="recommendations' FAISS index: exact (flat), or "
        "HNSW (approximate, for catalogues of millions; bench/scale.py), built in "
        "the background after start-up while the exact index serves",
    )
    hnsw_m: int = Field(32, ge=4, description="HNSW links per node")
    hnsw_ef_construction: int = Field(
        40, ge=8, description="HNSW candidate list while inserting (measured: docs/results.md, Catalogue size)"
    )
    hnsw_ef_search: int = Field(
        512,
        ge=8,
        description="HNSW candidate list while searching, at least k (recall and "
        "latency measured: docs/results.md, Catalogue size); raise it for catalogues of "
        "several millions: the 5M row there ran with 1024",
    )
    hnsw_compact_share: float = Field(
        0.2,
        gt=0.0,
        le=1.0,
        description="HNSW: rebuilt in the background once overwritten items' stale nodes pass this share of it",
    )
    faiss_threads: int = Field(
        1,
        description="OpenMP threads per FAISS search, set on every thread that searches (the "
        "event loop's: top-k; the graph threads': anchors). One query per request or a "
        "micro-batch of them: more threads only spin against each other and the encoders",
    )
    user_history: int = Field(
        1000,
        ge=0,
        le=MAX_HISTORY,
        description="items kept per user (the newest) from "
        "POST /v1/users/{id}/interactions, left out of their recommendations with exclude_seen; "
        "0: off",
    )
    user_history_ttl_s: float = Field(
        30 * 86400.0, gt=0, description="a user's kept items expire this long after the last"
    )
    user_history_max_users: int = Field(
        2000,
        ge=1,
        description="users with kept items, across replicas: past it the "
        "user who posted least recently is forgotten. Redis holds up to about this x "
        "user_history x 200 bytes (IDs of 128 characters): raise it with Redis",
    )
    cold_boost: float = Field(
        0.0,
        ge=0.0,
        le=10.0,
        description="exploration: a new item's served vector is "
        "multiplied by 1 + cold_boost when it is POSTed (items stored before keep theirs; the "
        "warm-up path re-gates without it), so it reaches more users' top k; 0 serves the "
        "package's calibrated vector as it is. Shown in /v1/model",
    )


class RolloutSettings(BaseSettings):
    """Reloads, rollouts and canaries"""

    reload_grace_s: float = Field(
        10.0, description="after a model package reload, seconds the old package stays open for in-flight requests"
    )
    rollout_reembed: bool = Field(
        True,
        description="on POST /v1/admin/reload, re-embed every stored item for the new "
        "package (when its encoders are the serving one's) before switching to it",
    )
    rollout_switch_fraction: float = Field(
        1.0, gt=0.0, le=1.0, description="switch once the new package holds this share of the stored items"
    )
    rollout_wait_s: float = Field(
        30.0,
        ge=0.0,
        description="how long POST /v1/admin/reload waits for a rollout to "
        "switch before answering 202 (the rollout goes on; GET /v1/model shows it)",
    )
    rollout_keep_old_s: float = Field(
        86400.0,
        ge=0.0,
        description="after a switch, the old version's keys expire "
        "after this many seconds (replicas not yet reloaded still read them); 0: keep",
    )
    reembed_batch: int = Field(256, ge=1, description="items per graph call when re-embedding stored items")
    embed_image_roots: list[Path] = Field(
        default_factory=list,
        description="coldproxy embed: directories a "
        "catalogue's local image paths may point into, besides the catalogue's own",
    )
    embed_image_schemes: list[str] = Field(
        ["s3", "gs", "hdfs"],
        description="coldproxy embed: URI schemes a "
        "catalogue's images may be read from besides file:// (under the roots)",
    )
    candidate_package_dir: Path | None = Field(
        None,
        description="a second model package run in shadow beside the "
        "served one: every POST is embedded and stored for it too, and stored "
        "items are backfilled, but it is not served (except to canary users)",
    )
    canary_fraction: float = Field(
        0.0,
        ge=0.0,
        le=1.0,
        description="share of users (sticky, by a hash of the ID) "
        "whose rank and recommend requests the candidate answers once it is backfilled",
    )


class ServiceSettings(
    StoreSettings, AccessSettings, LimitSettings, BatchingSettings, RuntimeSettings, ReadSettings, RolloutSettings
):
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
        return {
            "kind": self.index,
            "hnsw_m": self.hnsw_m,
            "hnsw_ef_construction": self.hnsw_ef_construction,
            "hnsw_ef_search": self.hnsw_ef_search,
            "compact_share": self.hnsw_compact_share,
        }

    def ort_options(self) -> dict:
        """Keyword arguments of ``coldproxy.ort.make_session`` for every graph the service runs."""
        threads = self.ort_intra_threads or max(1, usable_cores() // max(1, self.batch_workers))
        return {
            "providers": self.ort_providers,
            "intra_threads": threads,
            "graph_optimization": self.ort_graph_optimization,
            "cpu_mem_arena": self.ort_cpu_mem_arena,
            "mem_pattern": self.ort_mem_pattern,
            "cuda_conv_algo_search": self.ort_cuda_conv_algo_search,
            "cuda_tf32": self.ort_cuda_tf32,
        }
