"""Staged training of the default item model: data -> split -> features -> ID model -> proxy generator
-> diffusion expert + cold-aware gate -> served choice -> calibration.

Every choice is made on validation (issue 21): the ID model falls back to another when it learnt
nothing (``train_id_model_checked``); single-modality generators are trained beside the fused one
(``select_modalities``) and the served generator is their validation-chosen blend
(``models/items/blend.py``); what a new item is served -- the gate's mix or one expert -- is the
validation-best (``select_served``); and ``check_selection`` fails the run loudly if the served
choice scores below any candidate on validation.

``train`` returns everything in memory (the benchmark uses it directly); ``save_checkpoint`` writes
what ``export`` needs into ``work_dir``: the generator's weights and config, the ID embeddings with
their external IDs, the warm items' content features, a few real inputs for the parity check, and
``metrics.json``.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from coldproxy.config import usable_cores
from coldproxy.id_space import normalise_rows
from coldproxy.package import seen_table
from models.cost import describe as describe_cost
from models.cost import estimate
from models.data import ColdStartSplit, Dataset, cold_start_split
from models.diffusion import Denoiser, DenoiserConfig
from models.evaluate import evaluate_decision, evaluate_split, validation_cold_ndcg
from models.features import EncoderGraphs, Features, cache_path, extract_features
from models.gate import ColdAwareGate
from models.given_space import GivenSpace, diagnostics, load_training_data, training_vectors
from models.idmodel import train_id_model_checked
from models.items.blend import describe, greedy_blend
from models.items.calibration import FILE as CALIBRATION_FILE
from models.items.calibration import Calibration, fit_calibration
from models.items.experts import Experts, ServedGate, fit_experts, select_served, served_cold
from models.items.generator import BlendedGenerator, GeneratorConfig, ProxyGenerator, RoutedGenerator, layer_groups
from models.items.proxy_training import predict, train_proxy
from models.items.text_finetune import LAYER_FILE, finetune_text_layer
from models.training import nth_seed, use_usable_cores

MODALITIES = {"both": (1, 1), "text": (1, 0), "image": (0, 1)}

@dataclass
class TrainResult:
    settings: object
    dataset: Dataset
    split: ColdStartSplit
    features: Features
    user_emb: np.ndarray
    item_emb: np.ndarray  # ID embeddings, zero rows for cold items
    proxy: ProxyGenerator | RoutedGenerator  # the validation-chosen generator
    metrics: dict
    experts: Experts | None = None  # diffusion expert + cold-aware gate, when trained
    calibration: Calibration | None = None  # new items' vectors to the warm items' scale, when fitted
    generators: dict = field(default_factory=dict)  # every candidate generator by modalities, as served (routed)
    text_layer: dict | None = None  # the text encoder's fine-tuned last layer (state dict), when fine-tuned
    space: GivenSpace | None = None  # the team's own ID space, when given (no ID model was trained)

    @property
    def score(self) -> str:
        return "dot" if self.space is None else self.space.info["score"]

    def served_item_emb(self, calibrated: bool = True) -> np.ndarray:
        """What the service would answer per item: ID embedding if warm; for a cold item the proxy,
        or the gate's mix of proxy and diffusion proxy when those stages were trained, calibrated
        when a calibration was fitted (and ``calibrated``), unit-length in a cosine space."""
        out = self.item_emb.copy()
        cold = np.setdiff1d(np.arange(self.dataset.n_items), self.split.warm_items)
        out[cold] = predict(self.proxy, self.features,
                            cold) if self.experts is None else served_cold(self.experts, cold)[0]
        if calibrated and self.calibration is not None:
            out[cold] = self.calibration.apply(out[cold])
        if self.score == "cosine":
            out[cold] = normalise_rows(out[cold])
        return out

    def package_tables(self) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
        """What the package serves from its ID space: (user IDs, user vectors, warm item rows, their vectors). A
        given space: every item with a vector, and its users (none when only item vectors were given)."""
        if self.space is None:
            return self.dataset.user_ids, self.user_emb, self.split.warm_items, self.item_emb[self.split.warm_items]
        items = self.space.package_items
        if not self.space.ranking:
            return [], np.zeros((0, self.user_emb.shape[1]), np.float32), items, self.space.item_emb[items]
        return self.dataset.user_ids, self.user_emb, items, self.space.item_emb[items]


def build_generator(features: Features, split: ColdStartSplit, item_emb: np.ndarray, settings) -> ProxyGenerator:
    """A generator configured from the settings; text layer groups by k-means over warm items' states."""
    warm = split.warm_items
    with_text = warm[features.has_text[warm]][:2000]
    groups = layer_groups(features.text_layers[with_text], settings.proxy_layer_groups,
                          settings.seed) if len(with_text) else []
    cfg = GeneratorConfig(
        text_dim=features.text.shape[1], image_dim=features.image.shape[1], n_text_layers=features.text_layers.shape[1],
        image_stage_dim=features.image_stages.shape[1], out_dim=item_emb.shape[1], hidden=settings.proxy_hidden,
        experts=settings.proxy_experts, top_k=settings.proxy_top_k, expert_type=settings.proxy_expert_type,
        fusion=settings.proxy_fusion, fine=settings.proxy_fine, modalities=MODALITIES[settings.proxy_modalities],
        text_groups=groups, dropout=settings.proxy_dropout,
        init_scale=float(np.linalg.norm(item_emb[warm], axis=1).mean()),
    )
    return ProxyGenerator(cfg)


def generator_weights(settings) -> dict[str, float]:
    return {"align": settings.lambda_align, "adapter": settings.lambda_adapter, "fusion": settings.lambda_fusion,
            "pal": settings.lambda_pal}


def fit_generator(features, split, user_emb, item_emb, settings, desc: str = "proxy generator", progress: bool = True,
                  ranking: bool = True):
    """One generator. Without ``ranking`` (a given space of item vectors only) its losses are the alignment ones:
    MSE to the item's vector (``proxy_mse_weight``), PAL and MAMEX's auxiliary losses, over the warm items."""
    return train_proxy(lambda: build_generator(features, split, item_emb, settings), features, split, user_emb,
                       item_emb, settings, bpr_weight=1.0 if ranking else 0.0,
                       mse_weight=settings.lambda_mse if ranking else settings.proxy_mse_weight,
                       weights=generator_weights(settings), desc=desc, progress=progress)


@dataclass
class GeneratorChoice:
    """The validation-chosen generator and how it was chosen."""

    model: nn.Module  # the greedy blend of the candidates (models.items.blend), a single one where it is best alone
    log: dict  # the training log of its heaviest member
    # validation-cold NDCG@20: "generator:<modalities>" (its seeds averaged), "generator:blend"
    scores: dict[str, float]
    candidates: dict[str, nn.Module]  # every generator trained, by name ("both", "text#2", ...), as served (routed)
    weights: dict[str, float]  # the blend's weights by generator ("text", "text#2", ...; seeds share their modality's)
    fusion_temperature: dict = field(default_factory=dict)  # per fused generator: chosen, and validation by temperature


def generator_candidates(features: Features, split: ColdStartSplit, user_emb: np.ndarray, item_emb: np.ndarray,
                         settings, progress: bool = True, ranking: bool = True) -> GeneratorChoice:
    """The configured generator and, with ``select_modalities`` and both modalities in the data, a
    text-only and an image-only one, each served through ``RoutedGenerator`` (the first fused generator
    for items without its modality); each of them from ``generator_seeds`` seeds (the second under
    "<modalities>#2", ...) and averaged over them uniformly, so the blend chooses between modalities
    only (weights over seeds fitted on validation would fit its noise); blended on validation. A fused
    generator's fusion temperature is chosen on validation first (``choose_fusion_temperature``)."""
    val, probe = split.val_items, np.zeros_like(item_emb)

    def score(vectors: np.ndarray) -> float:
        probe[val] = vectors
        return validation_cold_ndcg(user_emb, probe, split, "select")

    both = (settings.select_modalities and settings.proxy_modalities == "both" and features.has_text.any()
            and features.has_image.any())
    fitted, temperatures, fused = {}, {}, None
    for j in range(settings.generator_seeds):
        tag, s_j = ("", settings) if j == 0 else (f"#{j + 1}",
                                                  settings.model_copy(update={"seed": nth_seed(settings.seed, j)}))
        gen, lg = fit_generator(features, split, user_emb, item_emb, s_j, desc=f"proxy generator{tag}",
                                progress=progress, ranking=ranking)
        temperatures[settings.proxy_modalities + tag] = choose_fusion_temperature(gen, features, val, score,
                                                                                  settings.proxy_fusion_temperatures)
        fused = gen if j == 0 else fused
        fitted[settings.proxy_modalities + tag] = (gen, lg)
        for m in ("text", "image") if both else ():
            single, lg = fit_generator(features, split, user_emb, item_emb,
                                       s_j.model_copy(update={"proxy_modalities": m}),
                                       desc=f"proxy generator ({m} only){tag}", progress=progress, ranking=ranking)
            fitted[m + tag] = (RoutedGenerator(single, fused).eval(), lg)
    seeds: dict[str, list[str]] = {}  # modalities -> its generators' names, one per seed
    for name in fitted:
        seeds.setdefault(name.partition("#")[0], []).append(name)
    outputs = {m: np.mean([predict(fitted[n][0], features, val) for n in names], axis=0) for m, names in seeds.items()}
    by_modality, blend_score, singles = greedy_blend(outputs, score, settings.blend_rounds,
                                                     prefer=settings.proxy_modalities)
    # seeds share their modality's weight
    weights = {n: w / len(seeds[m]) for m, w in by_modality.items() for n in seeds[m]}
    scores = {f"generator:{m}": v for m, v in singles.items()}
    order = sorted(weights, key=lambda m: -weights[m])
    if len(order) == 1:
        chosen = fitted[order[0]][0]
    else:
        members = {m: getattr(fitted[m][0], "single", fitted[m][0]) for m in order if m != settings.proxy_modalities}
        chosen = BlendedGenerator(fused, members, weights).eval()
        scores["generator:blend"] = blend_score
    return GeneratorChoice(chosen, fitted[order[0]][1], scores, {m: model for m, (model, _) in fitted.items()}, weights,
                           temperatures)


def choose_fusion_temperature(model: ProxyGenerator, features: Features, items: np.ndarray, score,
                              grid: list[float]) -> dict:
    """Sets ``model``'s fusion temperature to the one of ``grid`` whose proxies for ``items`` score best
    (the trained 1 wins ties; a generator without a gate over two modalities keeps 1). Returns
    {"chosen": t, "validation": {t: score}}, empty validation where nothing was tried."""
    tried: dict[float, float] = {}
    if model.cfg.fusion == "gate" and model.cfg.modalities == (1, 1):
        for t in sorted(set(grid) | {1.0}, key=lambda t: t != 1.0):
            model.cfg.fusion_temperature = float(t)
            tried[float(t)] = float(score(predict(model, features, items)))
    model.cfg.fusion_temperature = max(tried, key=tried.__getitem__) if tried else 1.0
    return {"chosen": model.cfg.fusion_temperature, "validation": tried}


def check_selection(selection: dict) -> None:
    """The served choice must score at least every candidate on validation; a run where it does not
    is refused, not shipped (issue 21)."""
    served, best = selection["validation"][selection["served"]], max(selection["validation"].values())
    if served < best - 1e-9:
        raise RuntimeError(f"the served choice {selection['served']} scores {served:.5f} validation-cold NDCG@20, "
                           f"below a candidate's {best:.5f}: {selection['validation']}")


def estimate_cost(settings, ds: Dataset, split: ColdStartSplit, space: GivenSpace | None, cached: bool | None = None
                  ) -> dict[str, float]:
    """``models.cost.estimate`` for this run, before it starts (``cached``: whether the features are; by default
    whether the cache holds them now)."""
    cached = cache_path(ds, settings.cache_dir, settings.text_max_len).exists() if cached is None else cached
    both = any(ds.item_texts) and any(p is not None for p in ds.item_images)
    generators = settings.generator_seeds * (3 if settings.select_modalities and settings.proxy_modalities == "both"
                                             and both else 1)
    seconds = estimate(settings, ds.n_items, ds.n_users, len(split.train), len(split.warm_val), len(split.warm_items),
                       0 if cached else ds.n_items, generators, usable_cores())
    if space is not None:
        seconds["id_model"] = 0.0
    return seconds


def train(settings, encoder_graphs: EncoderGraphs, progress: bool = True) -> TrainResult:
    """Every stage on the settings' dataset; ``encoder_graphs`` (``export.encoders.encoder_graphs``) gives
    the ONNX encoders the features are computed with, on a feature-cache miss."""
    t0 = time.time()
    use_usable_cores()
    ds, space = load_training_data(settings)
    split = cold_start_split(ds, settings.seed, settings.split_ratios, settings.selection_holdout,
                             settings.decision_holdout)
    if progress:
        tqdm.write(describe_cost(estimate_cost(settings, ds, split, space)), file=sys.stderr)
    feats = extract_features(ds, encoder_graphs, settings.cache_dir, settings.text_max_len, settings.encode_batch,
                             progress, settings.feature_engine, settings.ray_address)
    t_feat = time.time()
    if space is None:
        U, I, id_log = train_id_model_checked(ds.n_users, ds.n_items, split, settings, progress)
    else:  # the team's own space: nothing to train (models/given_space.py)
        split = split.restrict_warm(space.has_vector)
        U, I = space.user_emb, training_vectors(space, split.warm_items)
        id_log = {"type": "given", "diagnostics": diagnostics(space, split, settings.seed), "history": []}
    ranking = space is None or space.ranking
    t_id = time.time()
    text_layer = finetune_log = None
    if settings.text_finetune:
        feats, text_layer, finetune_log = finetune_text_layer(ds.item_texts, feats, split, U, I, settings, progress)
    t_text = time.time()
    chosen = generator_candidates(feats, split, U, I, settings, progress, ranking)
    proxy, proxy_log = chosen.model, chosen.log
    selection = {"chosen_on": "validation-cold NDCG@20 on the part held out from early stopping"
                 if split.val_select_items is not None else "validation-cold NDCG@20",
                 "validation": dict(chosen.scores),
                 "generator": describe(chosen.weights), "generator_weights": chosen.weights, "served": "proxy",
                 "fusion_temperature": chosen.fusion_temperature}
    selection["validation"]["proxy"] = max(chosen.scores.values())
    t_proxy = time.time()
    experts = None
    if settings.diffusion:
        experts = fit_experts(feats, split, U, I, predict(proxy, feats, np.arange(ds.n_items)), settings, progress,
                              ranking=ranking)
        choice, scores = select_served(experts, U, split)
        experts.choice = choice if settings.served == "auto" else settings.served
        selection["validation"] |= scores
        selection["served"] = experts.choice
        selection["sampler"] = experts.sampler
    if settings.served == "auto":
        check_selection(selection)
    result = TrainResult(settings, ds, split, feats, U, I, proxy, {}, experts, generators=chosen.candidates,
                         text_layer=text_layer, space=space)
    calibration_log, t_experts = None, time.time()
    if settings.calibration and ranking and result.score == "dot":  # nothing to calibrate against / after unit length
        result.calibration, calibration_log = fit_calibration(U, I, result.served_item_emb(), split)
    t_cal = time.time()
    served = result.served_item_emb()
    result.metrics = {
        "dataset": ds.provenance | {"name": ds.name, "users": ds.n_users, "items": ds.n_items,
                                    "interactions": len(ds.items)},
        "split": {
            "seed": settings.seed, "ratios": list(settings.split_ratios), "warm_items": len(split.warm_items),
            "val_cold_items": len(split.val_items), "test_cold_items": len(split.test_items),
            "train_interactions": len(split.train),
        },
        "id_model": {**{k: v for k, v in id_log.items() if k != "history"},
                     "type": f"{id_log['type']}-bpr" if space is None else "given"},
        "proxy": {"type": "generator", "config": proxy.cfg.to_dict(),
                  **{k: v for k, v in proxy_log.items() if k != "history"}},
        "selection": selection,
        "test": evaluate_split(U, served, split),  # items only: U holds the items' queries
        "test_protocol": "users" if ranking else "self-retrieval: each test item is found by its own given vector",
        "test_uncalibrated": evaluate_split(U, result.served_item_emb(calibrated=False), split)["all"],
        "seconds": {"features": t_feat - t0, "id_model": t_id - t_feat, "text_finetune": t_text - t_id,
                    "proxy": t_proxy - t_text,
                    "diffusion+gate": t_experts - t_proxy, "calibration": t_cal - t_experts},
        "history": {"id_model": id_log["history"], "proxy": proxy_log["history"]},
    }
    if split.decide_items is not None:  # only to decide a default between trainings (bench/decide_defaults.py)
        result.metrics["decision"] = evaluate_decision(U, served, split)
        result.metrics["split"]["decision_cold_items"] = len(split.decide_items)
    result.metrics["seconds"]["evaluation"] = time.time() - t_cal
    if space is not None:  # the given space and its load report (export records a trained one from its tables)
        result.metrics["id_space"] = space.info
    if calibration_log is not None:
        result.metrics["calibration"] = calibration_log
    if finetune_log is not None:
        result.metrics["text_finetune"] = {k: v for k, v in finetune_log.items() if k != "history"}
        result.metrics["history"]["text_finetune"] = finetune_log["history"]
    if experts is not None:
        for stage, lg in experts.logs.items():
            result.metrics[stage] = {k: v for k, v in lg.items() if k != "history"}
            result.metrics["history"][stage] = lg["history"]
    return result


def save_checkpoint(result: TrainResult, work_dir: Path) -> Path:
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    torch.save(generator_checkpoint(result.proxy), work_dir / "proxy.pt")
    if result.calibration is not None:
        result.calibration.save(work_dir)
    else:
        (work_dir / CALIBRATION_FILE).unlink(missing_ok=True)  # none fitted: no stale one from an earlier run
    if result.text_layer is not None:
        torch.save(result.text_layer, work_dir / LAYER_FILE)
    else:
        (work_dir / LAYER_FILE).unlink(missing_ok=True)  # the published encoder: no stale layer from an earlier run
    warm = result.split.warm_items
    f = result.features
    user_ids, user_emb, served, served_emb = result.package_tables()
    seen_indptr, seen_items = seen_table(len(user_ids), result.dataset.n_items, served, result.split.train)
    np.savez(
        work_dir / "embeddings.npz",
        user_ids=np.array(user_ids, dtype=str), user_emb=user_emb.astype(np.float32),
        item_ids=np.array([result.dataset.item_ids[i] for i in served], dtype=str),
        item_emb=served_emb.astype(np.float32), item_text=f.text[served], item_image=f.image[served],
        item_mask=f.mask[served], seen_indptr=seen_indptr, seen_items=seen_items,
    )
    k = warm[: result.settings.parity_items]
    np.savez(work_dir / "parity_inputs.npz", text_features=f.text[k], image_features=f.image[k],
             text_layers=f.text_layers[k], image_stages=f.image_stages[k], modality_mask=f.mask[k])
    if result.experts is not None:
        ex, s = result.experts, result.settings
        torch.save({"denoiser": ex.denoiser.state_dict(), "denoiser_config": ex.denoiser.cfg.to_dict(),
                    "gate": ex.gate.state_dict(), "sampler": ex.sampler, "anchor_n": s.anchor_n, "served": ex.choice},
                   work_dir / "experts.pt")
        stacked, available = ex.stacked(result.item_emb, warm, result.dataset.n_items)
        np.savez(work_dir / "parity_experts.npz", anchor=ex.anchor[k], condition=ex.proxy[k],
                 gate_features=ex.features[k], expert_available=available[k], id_embedding=stacked[k, 0],
                 proxy=stacked[k, 1], diffusion=stacked[k, 2])
    (work_dir / "metrics.json").write_text(json.dumps(result.metrics, indent=2, default=float))
    return work_dir


def load_experts(work_dir: Path):
    """(denoiser, served gate, sampler kwargs, anchor_n) from ``experts.pt``, or None when not trained."""
    path = Path(work_dir) / "experts.pt"
    if not path.exists():
        return None
    ck = torch.load(path, weights_only=True)
    den = Denoiser(DenoiserConfig(**ck["denoiser_config"]))
    den.load_state_dict(ck["denoiser"])
    gate = ColdAwareGate()
    gate.load_state_dict(ck["gate"])
    return den.eval(), ServedGate(gate.eval(), ck.get("served", "gate")).eval(), ck["sampler"], ck["anchor_n"]


def generator_checkpoint(model: nn.Module) -> dict:
    """A generator's weights and config; a routed one's with its fused generator under "fused"; a blend's
    fused generator's with the single-modality ones and the weights under "blend"."""
    if isinstance(model, RoutedGenerator):
        return generator_checkpoint(model.single) | {"fused": generator_checkpoint(model.fused)}
    if isinstance(model, BlendedGenerator):
        singles = {n: generator_checkpoint(g) for n, g in zip(model.names, model.singles)}
        return generator_checkpoint(model.fused) | {"blend": {"weights": model.weights, "singles": singles}}
    return {"state_dict": model.state_dict(), "config": model.cfg.to_dict()}


def load_proxy(work_dir: Path, ck: dict | None = None) -> nn.Module:
    """The served generator of a checkpoint: a ``ProxyGenerator``, ``RoutedGenerator`` or ``BlendedGenerator``."""
    ck = torch.load(Path(work_dir) / "proxy.pt", weights_only=True) if ck is None else ck
    c = ck["config"]
    model = ProxyGenerator(GeneratorConfig(**(c | {"modalities": tuple(c["modalities"])})))
    model.load_state_dict(ck["state_dict"])
    if "fused" in ck:
        return RoutedGenerator(model.eval(), load_proxy(work_dir, ck["fused"])).eval()
    if "blend" in ck:
        singles = {n: load_proxy(work_dir, c) for n, c in ck["blend"]["singles"].items()}
        return BlendedGenerator(model.eval(), singles, ck["blend"]["weights"]).eval()
    return model.eval()
