"""All settings, one place. Every option is also an environment variable (prefix ``COLDPROXY_``).

``TrainSettings`` drives ``coldproxy train``/``export`` and the benchmarks, ``BundleSettings``
``coldproxy train-bundles``; ``ServiceSettings`` drives ``coldproxy serve``.
All read the environment and a ``.env`` file if present.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, PositiveFloat, PositiveInt, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from coldproxy.limits import MAX_BATCH, MAX_HISTORY, MAX_LIST

REPO_ROOT = Path(__file__).resolve().parents[1]
MEASURED = "bench/results/design_measurements.md"  # why some defaults are what they are
DEFAULT_DATASETS = (REPO_ROOT / ".." / "shared" / "datasets").resolve()


def usable_cores() -> int:
    """Cores this process may run on: its CPU affinity (taskset, a container's cpuset), not the host's count."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


class TrainSettings(BaseSettings):
    """Data, split, encoders, ID model, proxy model and artefact locations."""

    model_config = SettingsConfigDict(env_prefix="COLDPROXY_", env_file=".env", extra="ignore")

    # data
    data_dir: Path = Field(DEFAULT_DATASETS / "movielens-posters", description="dataset directory")
    data_format: Literal["movielens", "generic"] = "movielens"
    positive_threshold: float = Field(4.0, description="MovieLens rating >= this is a positive")
    max_items: int | None = Field(None, description="keep only the N most popular items (tests, demos)")
    seed: int = 0
    split_ratios: tuple[float, float, float] = (0.8, 0.1, 0.1)

    # the recommender's own ID space (models/given_space.py): given, no ID model is trained
    item_embeddings: Path | None = Field(None, description="your recommender's item vectors (item_id, embedding) as "
                                         "Parquet, or NAME.npy beside NAME.ids.txt: proxies are aligned to them and no "
                                         "ID model is trained; warm items are the items with a vector. Default: the "
                                         "generic data directory's item_embeddings.parquet (or .npy) when it has one")
    user_embeddings: Path | None = Field(None, description="your recommender's user vectors (user_id, embedding), same "
                                         "formats; with them the ranking losses use them, without them training uses "
                                         "the alignment losses only. Default: the generic data directory's "
                                         "user_embeddings.parquet (or .npy) when it has one")
    score_function: Literal["dot", "cosine"] = Field("dot", description="how your recommender scores a user against "
                                                     "an item; cosine: every vector is kept unit-length")

    # encoders
    cache_dir: Path = Field(REPO_ROOT / "artifacts" / "cache", description="feature cache")
    text_max_len: int = 128
    encode_batch: int = 64

    # ID model: MF-BPR or LightGCN, both trained with BPR on warm interactions
    id_model: Literal["mf", "lightgcn"] = Field("lightgcn", description="the existing recommender every proxy imitates "
                                              "(LightGCN: higher validation-cold NDCG@20 over 3 MovieLens seeds, "
                                              "0.2873 against MF's 0.2687; bench/results/quality_movielens_lightgcn.md)")
    lightgcn_layers: int = 3
    dim: int = 64
    id_epochs: int = Field(200, description="most ID-model epochs; early stopping on warm-validation NDCG@20 decides")
    id_steps_per_epoch: int = Field(48, ge=0, description="most BPR steps (graph propagations) an ID-model epoch takes: "
                                    "the batch grows with the data; 0: uncapped (bench/results/train_scale_300k.md)")
    id_lr_batch_power: float = Field(0.0, ge=0.0, le=1.0, description="ID-model learning rate x (batch / id_batch)^this")
    id_lr: float = 5e-3
    id_reg: float = 1e-4
    id_batch: int = Field(1024, description="BPR triples per step (bench/results/quality_movielens_id_batch1024.md)")
    eval_every: int = 5
    patience: int = 4
    id_fallback: bool = Field(True, description="when the ID model is not clearly better than popularity and random "
                              "on warm validation, also train the other ID model and a more regularised one: keep the best")

    # text encoder fine-tuning (models/items/text_finetune.py)
    text_finetune: bool = Field(False, description="fine-tune MiniLM's last layer on the warm items' ID embeddings "
                                "before the generators train (the package's text encoder carries the layer)")
    text_finetune_epochs: int = 10
    text_finetune_lr: float = 5e-5
    text_finetune_batch: int = 128

    # proxy generator (MAMEX adapters + fusion, IDProxy coarse -> fine); ablations switch parts off
    proxy_experts: int = Field(1, description="K experts per modality: 1, a single linear adapter, scored higher "
                               "on validation than MAMEX's MoE (4, 6, 8) on both benchmark datasets (README, Models)")
    proxy_top_k: int = Field(1, description="experts routed per item (MAMEX: 2-4; 1 was best on validation here)")
    proxy_expert_type: Literal["linear", "whitening"] = "linear"
    proxy_fusion: Literal["gate", "mean"] = Field("gate", description="adaptive gate, or the average (ablation)")
    proxy_fusion_temperatures: list[PositiveFloat] = Field([0.25, 0.5, 1.0, 2.0, 4.0], min_length=1, description="softmax "
                                                   "temperatures of the fused generator's gate tried on validation after "
                                                   "training (at 1); the validation-best is served, 1 winning ties")
    proxy_fine: bool = Field(True, description="IDProxy fine stage from multi-layer states (False: coarse only)")
    proxy_modalities: Literal["both", "text", "image"] = "both"
    proxy_layer_groups: int = Field(3, description="k-means groups over the text encoder's layers")
    lambda_align: float = Field(0.1, description="MAMEX eq. 8 weight (lambda_1)")
    lambda_adapter: float = Field(0.01, description="MAMEX eq. 4 weight (lambda_2)")
    lambda_fusion: float = Field(0.01, description="MAMEX eq. 7 weight (lambda_3)")
    lambda_pal: float = Field(0.1, description="IDProxy PAL weight")
    pal_temperature: float = 0.1
    lambda_mse: float = Field(0.0, description="MSE pull of the generator's proxy to the item's raw ID embedding")
    proxy_hidden: int = 256
    proxy_dropout: float = 0.1
    proxy_epochs: int = 40
    proxy_lr: float = 1e-3
    proxy_weight_decay: float = 1e-5
    proxy_ema_decay: float = Field(0.0, ge=0.0, lt=1.0, description="exponential moving average of the generator's "
                                   "weights, updated every step; validation, early stopping and the result use the "
                                   "average (0: off, the last step's weights)")
    proxy_batch: int = 1024
    proxy_steps_per_epoch: int = Field(96, ge=0, description="most steps a generator's epoch takes, its clicks sampled "
                                       "afresh each epoch, so an epoch stops growing with the log (0: every click)")
    proxy_negatives: PositiveInt = Field(1, description="warm negatives sampled per training click for the generator's "
                                         "ranking loss")
    proxy_ranking_loss: Literal["bpr", "softmax"] = Field("bpr", description="BPR averaged over a click's negatives, "
                                                          "or a sampled softmax: each click against every negative of "
                                                          "its batch (proxy_batch * proxy_negatives)")
    proxy_mse_weight: float = Field(1.0, description="MSE pull to ID embeddings (CB2CF baseline and skeleton MLP)")
    modality_dropout: float = Field(0.1, description="chance of hiding one modality of a training item")

    # diffusion expert + cold-aware gate (MoDiffE §4.2-4.4); stages 3 and 4 of the pipeline
    diffusion: bool = Field(True, description="train the diffusion expert and the cold-aware gate over experts")
    diffusion_T: int = Field(500, description="training noise steps T")
    diffusion_schedule: Literal["linear", "cosine"] = "linear"
    diffusion_hidden: int = 256
    diffusion_epochs: int = 200
    diffusion_lr: float = 1e-3
    diffusion_weight_decay: float = 1e-5
    diffusion_batch: int = 256
    diffusion_cond_dropout: float = Field(0.1, description="Gaussian noise on the condition in training, x its std")
    sampler: Literal["ddpm", "dpmpp1", "dpmpp2m"] = Field("dpmpp2m", description="DPM-Solver++ 2M, first order, or DDPM")
    sampler_steps: int = Field(3, description="denoiser calls per item (S)")
    sampler_spacing: Literal["time", "logsnr"] = "logsnr"
    sampler_start: float = Field(0.5, description="anchor's noise level, as a fraction of T")
    sampler_select: bool = Field(False, description="item model: choose the sampler's steps and start from the "
                                 "grids below on validation (the configured ones win ties); off by default: "
                                 "not a gain on both benchmark datasets (README, Models)")
    sampler_steps_grid: list[int] = Field([1, 2, 3], description="steps S tried when sampler_select is on")
    sampler_start_grid: list[float] = Field([0.3, 0.5, 0.7], description="starts (fraction of T) tried when "
                                            "sampler_select is on")
    anchor_n: int = Field(5, description="warm items averaged into the anchor (eq. 14)")
    gate_epochs: int = 30
    gate_lr: float = 1e-2
    gate_batch: int = 1024
    gate_steps_per_epoch: int = Field(0, ge=0, description="most steps a gate epoch takes, sampled afresh (0: every one)")
    gate_aug_ratio: float = Field(0.5, description="pseudo-cold triples per real one (eta, eq. 23)")
    gate_aug_alpha: float = Field(0.4, description="lambda ~ Beta(alpha, alpha) for pseudo-cold items")
    served: Literal["auto", "gate", "proxy", "diffusion", "anchor"] = Field(
        "auto", description="what a new item is served: the validation-best of the gate's mix and each single "
        "expert (auto), or that one; the package records the choice and every candidate's validation score")
    select_modalities: bool = Field(True, description="also train text-only and image-only generators and serve "
                                    "the validation-chosen blend of the three (false: the fused generator alone)")
    generator_seeds: int = Field(3, ge=1, description="each candidate generator (fused, text-only, image-only) "
                                 "trained from this many seeds and averaged uniformly over them before the blend")
    blend_rounds: int = Field(10, ge=1, description="generators averaged at most in the validation-chosen blend "
                              "(greedy ensemble selection, models/items/blend.py); 1: the single validation-best")
    selection_holdout: float = Field(0.0, ge=0.0, lt=1.0, description="share of the validation-cold items held out "
                                     "from early stopping, to choose between trained candidates on (generator "
                                     "modalities, the served expert); 0: choose on the early-stopping items")
    calibration: bool = Field(True, description="fit the affine map of new items' vectors to the warm items' "
                              "score scale on the validation all-items ranking (models/items/calibration.py)")

    # artefacts
    work_dir: Path = Field(REPO_ROOT / "artifacts" / "train", description="training checkpoint")
    package_dir: Path = Field(REPO_ROOT / "artifacts" / "package", description="exported model package",
                              validation_alias=AliasChoices("package_dir", "COLDPROXY_PACKAGE_DIR", "COLDPROXY_BUNDLE_DIR"))
    parity_items: int = 16
    parity_tolerance: float = 1e-4


class BundleSettings(TrainSettings):
    """MoDiffE on bundles; inherits the diffusion / sampler / gate settings (``COLDPROXY_BUNDLES_*``)."""

    model_config = SettingsConfigDict(env_prefix="COLDPROXY_BUNDLES_", env_file=".env", extra="ignore")
    data_dir: Path = Field(DEFAULT_DATASETS / "youshu", description="Youshu (CoHeat release) directory")
    scenario: Literal["cold", "warm", "all"] = "cold"
    # stage 1 (models/bundles/backbone.py): CrossCBR's published settings, chosen over stop 28's at stage 1 on
    # the warm tune split, 3 seeds (bench/results/bundle_backbone.md)
    lightgcn_layers: int = 1
    shared_user_table: bool = Field(True, description="one user table for both views (CrossCBR); off: one per view")
    layer_combine: Literal["mean", "normalised_sum"] = Field("normalised_sum", description="how a view combines its layers: "
                                                             "LightGCN's mean, or CrossCBR's layer 0 plus each "
                                                             "propagated layer L2-normalised")
    edge_dropout: float = Field(0.2, ge=0.0, lt=1.0, description="share of the user-bundle, user-item and bundle-item "
                                "edges dropped from the training graphs, resampled every epoch (CrossCBR's ED)")
    init: Literal["normal", "xavier"] = Field("xavier", description="base tables' initialisation: N(0, 0.1), or "
                                              "Xavier normal as CrossCBR (a small layer 0 beside normalised layers)")
    id_epochs: int = Field(100, description="most stage-1 epochs; early-stopped on the tune split")
    prior_fixed_epochs: dict[str, int] = Field({"cold": 60}, description="scenarios whose prior trains exactly this many "
                                               "epochs (at most id_epochs) instead of early-stopping: the cold tune split "
                                               "holds only bundles the prior never saw, so its NDCG is noise; 60: the "
                                               "median best epoch on the warm tune split (40, 60, 100 over 3 seeds)")
    id_lr: float = 1e-3
    id_reg: float = Field(0.0, description="L2 on the batch's base embeddings, per triple")
    id_weight_decay: float = Field(1e-4, ge=0.0, description="Adam weight decay on every stage-1 parameter, every step "
                                   "(CrossCBR's l2_reg: 1e-4)")
    id_batch: int = 2048
    contrast_weight: float = Field(0.02, description="weight of each cross-view InfoNCE term, users' and bundles' "
                                   "(CrossCBR: 0.04 on their mean)")
    contrast_temp: float = 0.25
    bpr_negatives: int = Field(4, ge=1, description="warm bundles sampled as negatives per (user, bundle) triple, "
                               "the BPR loss averaged over them (CrossCBR: 1); the served model scored higher on the tune "
                               "split with 4 in 8 of 9 scenario x seed runs (bench/results/bundles.md)")
    item_bpr_weight: float = Field(0.0, description="BPR on user-item interactions in the item-level view (MoDiffE "
                                   "eq. 2: CF on Y); off as in CrossCBR")
    composition_epochs: int = Field(20, description="bundle-item LightGCN epochs for the composition features")
    diffusion_epochs: int = 100
    anchor_n: int = Field(10, description="warm neighbours averaged into the anchor (MoDiffE: 10 on Youshu)")
    aug_eta: dict[str, float] = Field({"cold": 30.0, "warm": 0.1, "all": 0.5},
                                      description="weight of the pseudo-cold loss (eta, eq. 23; at most one pseudo-cold "
                                                  "triple per real one), per scenario; cold chosen on the cold tune split "
                                                  f"({MEASURED})")
    output_gate: bool = Field(True, description="tanh output-layer gate over views (False: both views weight 1)")
    use_diffusion: bool = True
    gate_variants: list[Literal["full", "no_augmentation", "no_output_gate"]] = Field(
        ["full", "no_augmentation", "no_output_gate"], min_length=1, description="stage-3 variants trained (each calibrated); the "
        "one best on the tune split is served, the first listed on a tie. full: as configured; no_augmentation: "
        "eta 0; no_output_gate: both views weight 1")
    cold_calibration: bool = Field(True, description="stage 4: choose on the tune split how bundles without "
                                   "interactions are served (per-view scales, the bundle view's source, a "
                                   "log(size) prior); off: the gate's vectors as they are")
    calibration_view_grid: list[float] = Field([0.0, 0.5, 1.0, 2.0, 4.0, 8.0],
                                               description="scales tried for each view of a cold bundle")
    calibration_size_grid: list[float] = Field([0.0, 1.0, 2.0, 4.0, 8.0],
                                               description="weights alpha tried for the size prior alpha*log(members)")
    calibration_offset_grid: list[float] = Field([-2.0, -1.0, -0.5, -0.25, 0.0, 0.25, 0.5, 1.0, 2.0],
                                                 description="offsets tried for every bundle without interactions, in "
                                                             "units of the std of the tune users' warm-bundle scores")
    calibration_sources: list[Literal["gate", "anchor"]] = Field(["gate", "anchor"], description="bundle-view "
                                                                 "sources tried: the gate's, or the anchor undenoised")
    calibration_cold_slots_grid: list[int] = Field(list(range(1, 20)), description="per-user placement: the k tried (0, "
                                                   "off, is always tried first); each user's offset aligns their k-th best "
                                                   "bundle without interactions with their (list_length - k)-th best warm one")
    calibration_list_length: int = Field(20, ge=2, description="the ranked list the per-user placement fills")
    package_dir: Path = Field(REPO_ROOT / "artifacts" / "bundle_package",
                              description="where `coldproxy train-bundles` writes the served package")
    parity_bundles: int = Field(64, description="bundles each exported graph is checked on against torch")
    parity_tolerance: float = 1e-4

    @model_validator(mode="after")
    def _slots_inside_the_list(self):
        bad = [k for k in self.calibration_cold_slots_grid if not 0 < k < self.calibration_list_length]
        if bad:
            raise ValueError(f"calibration_cold_slots_grid: {bad} outside 1..{self.calibration_list_length - 1}")
        return self


class ServiceSettings(BaseSettings):
    """HTTP service: model package, Redis, limits and auth."""

    model_config = SettingsConfigDict(env_prefix="COLDPROXY_", env_file=".env", extra="ignore", populate_by_name=True)

    package_dir: Path = Field(REPO_ROOT / "artifacts" / "package", description="the model package served",
                              validation_alias=AliasChoices("package_dir", "COLDPROXY_PACKAGE_DIR", "COLDPROXY_BUNDLE_DIR"))
    redis_url: str = Field("redis://127.0.0.1:6379/0",
                           validation_alias=AliasChoices("REDIS_URL", "COLDPROXY_REDIS_URL", "redis_url"))
    redis_prefix: str = "coldproxy"
    redis_cluster: bool = Field(False, description="REDIS_URL names a node of a Redis Cluster: keys are partitioned "
                                "by hash tags (service/storage/cluster.py)")
    redis_cluster_partitions: int = Field(16, ge=1, le=16384, description="partitions of each key family on a "
                                          "cluster (spread over its masters by their hash slots)")
    sync_stream_maxlen: int = Field(100_000, ge=100, description="entries kept (about) in each catalogue's event "
                                    "stream; a replica further behind reloads the whole set from Redis")
    allow_memory_store: bool = Field(False, description="fall back to an in-process store without Redis")
    host: str = "127.0.0.1"
    port: int = 8000
    api_key: str | None = Field(None, description="an API key; when any key is set, writes need one")
    admin_api_keys: list[str] = Field(default_factory=list, description="keys for the admin routes (POST "
                                      "/v1/admin/reload); they also pass where a write key does. With any key "
                                      "configured, admin routes need one of these")
    admin_api_keys_file: Path | None = Field(None, description="file of admin keys, `name:key` per line; re-read "
                                             "when it changes")
    allow_anonymous_writes: bool = Field(False, description="serve writes without API keys on a non-loopback "
                                         "address; off, such a service refuses to start")
    allowed_hosts: list[str] = Field(default_factory=list, description="Host names a keyless service takes writes "
                                     "under, besides loopback's and COLDPROXY_HOST's")
    api_keys: list[str] = Field(default_factory=list, description="more API keys (JSON list in the env var)")
    api_keys_file: Path | None = Field(None, description="file of API keys, `name:key` per line; re-read when it changes")
    auth_reads: bool = Field(False, description="also require an API key on read endpoints")
    rate_limit_rps: float = Field(0.0, description="per-client requests/s on /v1 routes (0 = no limit); per replica")
    rate_limit_burst: int = Field(20, description="requests a client may send at once before the rate applies")
    shutdown_grace_s: float = Field(20.0, gt=0, description="on SIGTERM: stop accepting, then wait up to this long for "
                                    "requests in flight to finish (keep it under the pod's termination grace period)")
    keep_features: Literal["float16", "float32", "off"] = Field(
        "float16", description="keep each POSTed item's content features (the encoders' outputs) in Redis, so a new "
        "model package with the same encoders re-embeds every stored item (10.3 KB per item as float16, 20.6 KB as "
        "float32, for the MiniLM + EfficientNet encoders); off: a new package starts with no new items")
    rollout_reembed: bool = Field(True, description="on POST /v1/admin/reload, re-embed every stored item for the new "
                                  "package (when its encoders are the serving one's) before switching to it")
    rollout_switch_fraction: float = Field(1.0, gt=0.0, le=1.0, description="switch once the new package holds this "
                                           "share of the stored items")
    rollout_wait_s: float = Field(30.0, ge=0.0, description="how long POST /v1/admin/reload waits for a rollout to "
                                  "switch before answering 202 (the rollout goes on; GET /v1/model shows it)")
    rollout_keep_old_s: float = Field(86400.0, ge=0.0, description="after a switch, the old version's keys expire "
                                      "after this many seconds (replicas not yet reloaded still read them); 0: keep")
    reembed_batch: int = Field(256, ge=1, description="items per graph call when re-embedding stored items")
    candidate_package_dir: Path | None = Field(None, description="a second model package run in shadow beside the "
                                               "served one: every POST is embedded and stored for it too, and stored "
                                               "items are backfilled, but it is not served (except to canary users)")
    canary_fraction: float = Field(0.0, ge=0.0, le=1.0, description="share of users (sticky, by a hash of the ID) "
                                   "whose rank and recommend requests the candidate answers once it is backfilled")
    reload_grace_s: float = Field(10.0, description="after a model package reload, seconds the old package stays open for in-flight requests")
    max_request_bytes: int = Field(8 * 1024 * 1024, description="largest request body (POST /v1/items, its image); "
                                   "JSON routes have smaller limits, from their settings (service/api/limits.py)")
    max_header_bytes: int = Field(16 * 1024, ge=1024, description="a request's headers, all together: 431 past it")
    max_url_bytes: int = Field(8 * 1024, ge=256, description="a request's URL (path and query): past it, 414")
    max_connections: int = Field(512, ge=1, description="connections and requests in flight (uvicorn's limit): 503")
    body_timeout_s: float = Field(60.0, gt=0, description="a request body must be in within this many seconds: 408")
    max_image_pixels: int = 40_000_000
    max_decode_bytes: int = Field(512 * 1024 * 1024, description="decoded image bytes in flight (each image's peak, "
                                  "from its header: coldproxy.preprocess.image_cost); further decodes wait")
    decode_wait_s: float = Field(10.0, gt=0, description="an image's wait for the decode budget before a 503")
    max_text_chars: int = 10_000
    max_batch_items: int = Field(64, ge=1, le=MAX_BATCH, description="items per POST /v1/items:batch")
    max_batch_bytes: int = Field(64 * 1024 * 1024, description="largest POST /v1/items:batch body")
    max_candidates: int = Field(10_000, ge=1, le=MAX_LIST, description="candidates per rank request")
    max_user_norm: float | None = Field(None, gt=0, description="largest norm of a user_embedding a client may send; "
                                        "default: vector_norm_slack x the largest norm among the package's users (its "
                                        "warm items' when it has none); none in a cosine space (made unit-length)")
    vector_norm_slack: float = Field(1.5, ge=1.0, description="how far past the package's own vectors a client's "
                                     "vector may reach: user_embedding (see max_user_norm) and PUT "
                                     "/v1/items:id-embeddings bound their norms by this times the largest there")
    max_id_vectors: int = Field(1000, ge=1, le=MAX_LIST, description="item vectors per PUT /v1/items:id-embeddings")
    max_k: int = 1000
    user_history: int = Field(1000, ge=0, le=MAX_HISTORY, description="items kept per user (the newest) from POST "
                              "/v1/users/{id}/interactions, left out of their recommendations with exclude_seen; 0: off")
    user_history_ttl_s: float = Field(30 * 86400.0, gt=0, description="a user's kept items expire this long after the last")
    micro_batching: bool = Field(True, description="batch concurrent POST /v1/items through the graphs")
    batch_max_size: int = Field(32, description="largest micro-batch")
    batch_max_wait_ms: float = Field(5.0, description="how long a batch waits to fill once its first item is in, "
                                     "while every other batch worker is busy (with one idle, it runs at once)")
    batch_queue_max: int = Field(256, description="items waiting for the model before POSTs get 503")
    batch_deadline_s: float = Field(30.0, gt=0, description="a POST waiting longer than this for the model gets a 503")
    pad_image_batches: Literal["auto", "on", "off"] = Field("auto", description="run the image encoder at power-of-two "
        "batch sizes, one session per size, each warmed up at start-up; auto: on CUDA, where cuDNN rebuilds its plans "
        f"whenever a session's input shape changes ({MEASURED})")
    batch_workers: int = Field(2, description="micro-batches run concurrently")
    local_reads: bool = Field(True, description="answer GET / rank for cold items this replica has indexed from memory "
                              "(kept in step with Redis by its event stream); off: every cold read goes to Redis")
    max_store_lookups: int = Field(256, ge=0, description="with local_reads: IDs of a request the index lacks that are "
                                   "looked up in Redis (another replica's write of an instant ago); 0: all")
    bundle_package_dir: Path | None = Field(
        REPO_ROOT / "artifacts" / "bundle_package",
        validation_alias=AliasChoices("bundle_package_dir", "COLDPROXY_BUNDLE_PACKAGE_DIR",
                                      "COLDPROXY_BUNDLE_RECOMMENDER_DIR"),
        description="bundle recommender package (`coldproxy train-bundles`); served under /v1/bundles when the "
                    "directory exists (a directory that is there but invalid stops start-up); empty: no bundles")
    max_bundle_members: int = Field(1000, ge=1, le=MAX_LIST, description="member items per POST /v1/bundles")
    cold_boost: float = Field(0.0, ge=0.0, le=10.0, description="exploration: a new item's served vector is "
                              "multiplied by 1 + cold_boost when it is POSTed (items stored before keep theirs; the "
                              "warm-up path re-gates without it), so it reaches more users' top k; 0 serves the "
                              "package's calibrated vector as it is. Shown in /v1/model")
    ort_intra_threads: int = Field(0, description="ONNX Runtime threads per graph call; 0: the cores shared out among "
                                   "the batches in flight (cores // batch_workers, at least 1), so concurrent batches "
                                   "do not oversubscribe the CPU")
    ort_graph_optimization: Literal["disable", "basic", "extended", "all"] = "all"
    ort_cpu_mem_arena: bool = Field(True, description="ONNX Runtime CPU allocator arena")
    ort_mem_pattern: bool = Field(True, description="ONNX Runtime memory-pattern planning for repeated shapes")
    access_log: bool = Field(False, description="uvicorn's access log, a line per request (off: /metrics counts "
                             f"requests by route and status; the line costs the event loop time: {MEASURED})")
    gc_freeze: bool = Field(True, description="after start-up, gc.freeze: full collections skip the loaded package")
    index: Literal["flat", "hnsw"] = Field("flat", description="recommendations' FAISS index: exact (flat), or "
                                           "HNSW (approximate, for catalogues of millions; bench/scale.py), built in "
                                           "the background after start-up while the exact index serves")
    hnsw_m: int = Field(32, ge=4, description="HNSW links per node")
    hnsw_ef_construction: int = Field(40, ge=8, description="HNSW candidate list while inserting (40 built faster "
                                      "and found more than 80 here: bench/results/scale.md)")
    hnsw_ef_search: int = Field(512, ge=8, description="HNSW candidate list while searching, at least k: recall@100 "
                                "0.957 at 1M synthetic items here, 0.70 ms a search (bench/results/scale.md)")
    hnsw_compact_share: float = Field(0.2, gt=0.0, le=1.0, description="HNSW: rebuilt in the background once "
                                      "overwritten items' stale nodes pass this share of it")
    faiss_threads: int = Field(1, description="OpenMP threads per FAISS search, set on every thread that searches (the "
                               "event loop's: top-k; the graph threads': anchors). One query per request or a "
                               "micro-batch of them: more threads only spin against each other and the encoders")
    ort_providers: list[str] | None = Field(None, description="ONNX Runtime providers; default: CUDA if present, else CPU")
    ort_cuda_conv_algo_search: Literal["EXHAUSTIVE", "HEURISTIC", "DEFAULT"] = Field(
        "HEURISTIC", description="CUDA provider: how cuDNN picks a convolution algorithm for each new batch shape")
    ort_cuda_tf32: bool = Field(False, description="CUDA provider: TF32 matrix products (vectors drift from the "
                                "CPU's that export checked)")

    @field_validator("bundle_package_dir", "candidate_package_dir", mode="before")
    @classmethod
    def _empty_is_none(cls, value):
        """``COLDPROXY_BUNDLE_RECOMMENDER_DIR=`` (empty) means no bundle recommender, not the current directory
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
