"""``TrainSettings``: what ``coldproxy train`` and ``coldproxy export`` read (``COLDPROXY_*``), one class per concern:
the data and its split, a given ID space, the ID model, the generators, the item model's diffusion and gate, calibration
and the package. The variables stay flat (``COLDPROXY_PROXY_EPOCHS``); the classes group them for people and for
``docs/configuration.md``."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, PositiveFloat, PositiveInt
from pydantic_settings import BaseSettings, SettingsConfigDict

from coldproxy.config.base import DEFAULT_DATASETS, REPO_ROOT
from coldproxy.config.experts import ExpertSettings


class DataSettings(BaseSettings):
    """The data, its split and the content features"""

    data_dir: Path = Field(DEFAULT_DATASETS / "movielens-posters", description="dataset directory")
    data_format: Literal["movielens", "generic"] = Field(
        "movielens",
        description="movielens (ratings.csv, movies.csv, posters/) or "
        "generic (interactions.csv, items.csv: "
        "docs/getting-started.md)",
    )
    positive_threshold: float = Field(
        4.0,
        description="MovieLens rating >= this is a positive; a lower rating is an "
        "interaction seen, not positive: never trained on, left out of recommendations",
    )
    item_tags: bool = Field(
        False,
        description="MovieLens: the users' tags (tags.csv) join an item's text. Off: tags "
        "are written by users after they watched, interaction data a new item does not have at "
        "upload; turn it on only where tags come with the item (written by its author)",
    )
    max_items: int | None = Field(None, description="keep only the N most popular items (tests, demos)")
    split_ratios: tuple[float, float, float] = Field(
        (0.8, 0.1, 0.1),
        description="train / validation / test shares of the items held "
        "out as cold, and of the warm items' interactions",
    )
    selection_holdout: float = Field(
        0.0,
        ge=0.0,
        lt=1.0,
        description="share of the validation-cold items held out "
        "from early stopping, to choose between trained candidates on (generator "
        "modalities, the served expert); 0: choose on the early-stopping items "
        "(decided on held-out validation, docs/models.md)",
    )
    decision_holdout: float = Field(
        0.0,
        ge=0.0,
        lt=1.0,
        description="share of the validation-cold items set "
        "aside before anything else, unseen by training and every choice, and scored "
        "into metrics.json (decision) to decide a default between two trainings "
        "(bench/decide_defaults.py); 0: none, as a served package is trained",
    )
    cache_dir: Path = Field(REPO_ROOT / "artifacts" / "cache", description="feature cache")
    text_max_len: int = Field(128, description="tokens of an item's text the text encoder reads")
    encode_batch: int = Field(64, description="items per encoder call while extracting content features")
    feature_engine: Literal["local", "ray"] = Field(
        "local",
        description="where the encoders' pass over the catalogue "
        "runs on a feature-cache miss: this process, or a Ray cluster's "
        "actors (pip install 'coldproxy[ray]'; the same features)",
    )
    ray_address: str | None = Field(
        None, description="the Ray cluster of feature_engine=ray (default: RAY_ADDRESS, else a local instance)"
    )


class IDSpaceSettings(BaseSettings):
    """Your recommender's own ID space (models/given_space.py): given, no ID model is trained"""

    item_embeddings: Path | None = Field(
        None,
        description="your recommender's item vectors (item_id, embedding) as "
        "Parquet, or NAME.npy beside NAME.ids.txt: proxies are aligned to them and no "
        "ID model is trained; warm items are the items with a vector. Default: the "
        "generic data directory's item_embeddings.parquet (or .npy) when it has one",
    )
    user_embeddings: Path | None = Field(
        None,
        description="your recommender's user vectors (user_id, embedding), same "
        "formats; with them the ranking losses use them, without them training uses "
        "the alignment losses only. Default: the generic data directory's "
        "user_embeddings.parquet (or .npy) when it has one",
    )
    score_function: Literal["dot", "cosine"] = Field(
        "dot",
        description="how your recommender scores a user against an item; cosine: every vector is kept unit-length",
    )


class IDModelSettings(BaseSettings):
    """The ID model coldproxy trains: MF-BPR or LightGCN on warm interactions"""

    id_model: Literal["mf", "lightgcn"] = Field(
        "lightgcn",
        description="the ID model coldproxy trains, which every proxy imitates (why LightGCN: docs/models.md)",
    )
    lightgcn_layers: int = Field(3, description="LightGCN propagation layers")
    id_epochs: int = Field(
        60,
        description="most ID-model epochs; early stopping on warm-validation NDCG@20 decides within them (60: 200 did "
        "not clear the decision floor, docs/ablations.md)",
    )
    id_steps_per_epoch: int = Field(
        48,
        ge=0,
        description="most BPR steps (graph propagations) an ID-model epoch takes: "
        "the batch grows with the data instead; 0: uncapped (docs/models.md)",
    )
    id_lr_batch_power: float = Field(
        0.0, ge=0.0, le=1.0, description="ID-model learning rate x (batch / id_batch)^this"
    )
    id_lr: float = Field(5e-3, description="ID-model Adam learning rate")
    id_reg: float = Field(1e-4, description="ID-model L2 on the batch's embeddings")
    id_batch: int = Field(1024, description="BPR triples per ID-model step (why 1024: docs/models.md)")
    id_fallback: bool = Field(
        True,
        description="when the ID model is not clearly better than popularity and random "
        "on warm validation, also train the other ID model and a more regularised one: keep the "
        "best",
    )


class GeneratorSettings(BaseSettings):
    """The proxy generators (MAMEX adapters and fusion, IDProxy coarse to fine) and the text fine-tuning"""

    text_finetune: bool = Field(
        False,
        description="fine-tune MiniLM's last layer on the warm items' ID embeddings "
        "before the generators train (the package's text encoder carries the layer)",
    )
    text_finetune_epochs: int = Field(
        10, description="text fine-tuning epochs (early-stopped on validation-cold NDCG@20)"
    )
    text_finetune_lr: float = Field(5e-5, description="text fine-tuning learning rate")
    text_finetune_batch: int = Field(128, description="text fine-tuning batch")
    proxy_experts: int = Field(
        1,
        description="K experts per modality: 1, a single linear adapter, scored higher "
        "on validation than MAMEX's MoE (4, 6, 8) on both benchmark datasets (docs/models.md)",
    )
    proxy_top_k: int = Field(
        1, description="experts routed per item (MAMEX: 2-4; chosen on validation: docs/models.md)"
    )
    proxy_expert_type: Literal["linear", "whitening"] = Field(
        "linear", description="a modality adapter's expert: linear, or whitening then linear"
    )
    proxy_fusion: Literal["gate", "mean"] = Field("gate", description="adaptive gate, or the average (ablation)")
    proxy_fusion_temperatures: list[PositiveFloat] = Field(
        [1.0],
        min_length=1,
        description="softmax temperatures of the fused generator's gate tried on validation after training (at 1); "
        "the validation-best is served, 1 winning ties. Only 1 by default: choosing among 0.25-4 did not clear the "
        "decision floor (docs/ablations.md)",
    )
    proxy_fine: bool = Field(True, description="IDProxy fine stage from multi-layer states (False: coarse only)")
    proxy_modalities: Literal["both", "text", "image"] = Field("both", description="the fused generator's inputs")
    proxy_layer_groups: int = Field(3, description="k-means groups over the text encoder's layers")
    lambda_align: float = Field(0.1, description="MAMEX eq. 8 weight (lambda_1)")
    lambda_adapter: float = Field(0.01, description="MAMEX eq. 4 weight (lambda_2)")
    lambda_fusion: float = Field(0.01, description="MAMEX eq. 7 weight (lambda_3)")
    lambda_pal: float = Field(0.1, description="IDProxy PAL weight")
    pal_temperature: float = Field(0.1, description="IDProxy PAL softmax temperature")
    lambda_mse: float = Field(0.0, description="MSE pull of the generator's proxy to the item's raw ID embedding")
    proxy_hidden: int = Field(256, description="generator hidden width")
    proxy_dropout: float = Field(0.1, description="generator dropout")
    proxy_epochs: int = Field(
        40, description="most generator epochs; early stopping on validation-cold NDCG@20 decides"
    )
    proxy_patience: int = Field(
        2,
        ge=1,
        description="generator epochs without a validation gain before early "
        "stopping (the generators and the CB2CF baseline; every other stage: patience); 2, "
        "decided on held-out validation against 4 (bench/results/decide_defaults_patience.md)",
    )
    proxy_lr: float = Field(1e-3, description="generator Adam learning rate")
    proxy_weight_decay: float = Field(1e-5, description="generator Adam weight decay")
    proxy_ema_decay: float = Field(
        0.0,
        ge=0.0,
        lt=1.0,
        description="exponential moving average of the generator's "
        "weights, updated every step; validation, early stopping and the result use the "
        "average (0: off, the last step's weights)",
    )
    proxy_batch: int = Field(1024, description="training clicks per generator step")
    proxy_steps_per_epoch: int = Field(
        96,
        ge=0,
        description="most steps a generator's epoch takes, its clicks sampled "
        "afresh each epoch, so an epoch stops growing with the log (0: every click)",
    )
    proxy_negatives: PositiveInt = Field(
        1, description="warm negatives sampled per training click for the generator's ranking loss"
    )
    proxy_ranking_loss: Literal["bpr", "softmax"] = Field(
        "bpr",
        description="BPR averaged over a click's negatives, "
        "or a sampled softmax: each click against every negative of "
        "its batch (proxy_batch * proxy_negatives)",
    )
    proxy_mse_weight: float = Field(1.0, description="MSE pull to ID embeddings (CB2CF baseline and skeleton MLP)")
    modality_dropout: float = Field(0.1, description="chance of hiding one modality of a training item")
    select_modalities: bool = Field(
        False,
        description="also train text-only and image-only generators and serve "
        "the validation-chosen blend of the three (false: the fused generator alone); "
        "off by default: on held-out validation its gain did not clear the decision floor (docs/ablations.md)",
    )
    generator_seeds: int = Field(
        1,
        ge=1,
        description="each candidate generator (fused, text-only, image-only) trained from this many seeds and "
        "averaged uniformly over them before the blend; 1 by default: 3 did not clear the decision floor "
        "(docs/ablations.md)",
    )
    blend_rounds: int = Field(
        10,
        ge=1,
        description="generators averaged at most in the validation-chosen blend "
        "(greedy ensemble selection, models/items/blend.py); 1: the single validation-best",
    )


class ItemExpertSettings(ExpertSettings):
    """The item model's diffusion expert and gate, and what a new item is served"""

    diffusion: bool = Field(True, description="train the diffusion expert and the cold-aware gate over experts")
    sampler_select: bool = Field(
        True,
        description="item model: choose the sampler's steps and start from the "
        "grids below on validation (the configured ones win ties); on by default because "
        "held-out validation chose it (bench/results/decide_defaults.md)",
    )
    sampler_steps_grid: list[int] = Field([1, 2, 3], description="steps S tried when sampler_select is on")
    sampler_start_grid: list[float] = Field(
        [0.3, 0.5, 0.7], description="starts (fraction of T) tried when sampler_select is on"
    )
    gate_steps_per_epoch: int = Field(
        0, ge=0, description="most steps a gate epoch takes, sampled afresh (0: every one)"
    )
    gate_aug_ratio: float = Field(0.5, description="pseudo-cold triples per real one (eta, eq. 23)")
    served: Literal["auto", "gate", "proxy", "diffusion", "anchor"] = Field(
        "auto",
        description="what a new item is served: auto, the generator's proxy unless a costlier expert or the "
        "gate's mix clears the decision floor over it on validation (docs/ablations.md), or that one; the package "
        "records the choice, every candidate's validation score and each one's margin over the floor",
    )


class PackageSettings(BaseSettings):
    """Calibration, the checkpoint and the exported package"""

    calibration: bool = Field(
        True,
        description="fit the affine map of new items' vectors to the warm items' "
        "score scale on the validation all-items ranking (models/items/calibration.py)",
    )
    refit: bool = Field(
        True,
        description="after the evaluation, train the served package again on all the data with "
        "the evaluation's choices (models/items/refit.py): every item with an interaction is then "
        "warm; false (--no-refit): serve the evaluation split's package, as the benchmarks measure it",
    )
    work_dir: Path = Field(REPO_ROOT / "artifacts" / "train", description="training checkpoint")
    package_dir: Path = Field(
        REPO_ROOT / "artifacts" / "package",
        description="exported model package (COLDPROXY_BUNDLE_DIR: its deprecated name)",
        validation_alias=AliasChoices("package_dir", "COLDPROXY_PACKAGE_DIR", "COLDPROXY_BUNDLE_DIR"),
    )
    parity_items: int = Field(16, description="items each exported graph is checked on against torch")
    parity_tolerance: float = Field(
        1e-4,
        description="largest difference export accepts between ONNX Runtime and torch "
        "(relative to the output's scale when that is above 1)",
    )


class TrainSettings(
    DataSettings, IDSpaceSettings, IDModelSettings, GeneratorSettings, ItemExpertSettings, PackageSettings
):
    """Everything ``coldproxy train`` and ``coldproxy export`` read."""

    model_config = SettingsConfigDict(env_prefix="COLDPROXY_", env_file=".env", extra="ignore")
