"""Staged training of the default item model, the evaluation: data -> split -> features -> ID model -> proxy
generator -> diffusion expert + cold-aware gate -> served choice -> calibration.

Every choice is made on validation (issue 21): the ID model falls back to another when it learnt
nothing (``train_id_model_checked``); single-modality generators are trained beside the fused one
(``select_modalities``) and the served generator is their validation-chosen blend
(``models/items/candidates.py``); what a new item is served -- the gate's mix or one expert -- is the
simplest unless a costlier one clears the decision floor on validation (``select_served``); and
``check_selection`` fails the run loudly if the served choice scores below a candidate that the floor did not turn
down. The metrics record every choice (``choices``: epochs, weights, temperatures, sampler, served expert,
calibration), which is what a refit on all the data trains with
(``models/items/refit.py``), and the test split's numbers, which decide nothing.

``train`` returns everything in memory (the benchmark uses it directly); ``models.items.checkpoint.save_checkpoint``
writes what ``export`` needs.
"""

from __future__ import annotations

import sys
import time
import uuid
from dataclasses import dataclass

import numpy as np
from tqdm.auto import tqdm

from coldproxy.config import usable_cores
from models.cost import describe as describe_cost
from models.cost import estimate
from models.data import Dataset
from models.evaluate import evaluate_decision, evaluate_split
from models.features import Features, cache_path, extract_features
from models.given_space import GivenSpace, diagnostics, load_training_data, training_vectors
from models.idmodel import train_id_model_checked
from models.items.blend import describe
from models.items.calibration import fit_calibration
from models.items.candidates import generator_candidates
from models.items.experts import fit_experts, select_served
from models.items.proxy_training import predict
from models.items.result import TrainResult
from models.items.text_finetune import finetune_text_layer
from models.split import ColdStartSplit, cold_start_split
from models.training import use_usable_cores


def check_selection(selection: dict) -> None:
    """The served choice must score at least every candidate on validation, except a costlier one whose gain the
    decision floor turned down (``selection["margins"]``, issue 57); a run where it does not is refused, not
    shipped (issue 21)."""
    served = selection["validation"][selection["served"]]
    margins = selection.get("margins", {})
    above = {
        c: v
        for c, v in selection["validation"].items()
        if v > served + 1e-9 and not (c in margins and not margins[c]["adopt"])
    }
    if above:
        raise RuntimeError(
            f"the served choice {selection['served']} scores {served:.5f} validation-cold NDCG@20, "
            f"below a candidate's {max(above.values()):.5f} that no decision floor turned down: "
            f"{selection['validation']}"
        )


def estimate_cost(
    settings, ds: Dataset, split: ColdStartSplit, space: GivenSpace | None, cached: bool | None = None
) -> dict[str, float]:
    """``models.cost.estimate`` for this run, before it starts (``cached``: whether the features are; by default
    whether the cache holds them now)."""
    cached = cache_path(ds, settings.cache_dir, settings.text_max_len).exists() if cached is None else cached
    both = any(ds.item_texts) and any(p is not None for p in ds.item_images)
    generators = settings.generator_seeds * (
        3 if settings.select_modalities and settings.proxy_modalities == "both" and both else 1
    )
    seconds = estimate(
        settings,
        ds.n_items,
        ds.n_users,
        len(split.train),
        len(split.warm_val),
        len(split.warm_items),
        0 if cached else ds.n_items,
        generators,
        usable_cores(),
    )
    if space is not None:
        seconds["id_model"] = 0.0
    return seconds


@dataclass
class Prepared:
    """What every content model of a run is fitted on: the data, its split, the content features and the ID space
    (trained, or the team's own), with the seconds each took."""

    settings: object
    dataset: Dataset
    split: ColdStartSplit
    features: Features
    user_emb: np.ndarray
    item_emb: np.ndarray
    id_log: dict
    space: GivenSpace | None
    seconds: dict

    @property
    def ranking(self) -> bool:
        return self.space is None or self.space.ranking


def prepare(settings, encoder_graphs, progress: bool = True) -> Prepared:
    """The split, the features and the ID model (or the given space) of a run: ``train``'s first stages, which
    ``bench/quality.py`` also fits the baselines on."""
    t0 = time.time()
    use_usable_cores()
    ds, space = load_training_data(settings)
    split = cold_start_split(
        ds, settings.seed, settings.split_ratios, settings.selection_holdout, settings.decision_holdout
    )
    if progress:
        tqdm.write(describe_cost(estimate_cost(settings, ds, split, space)), file=sys.stderr)
    feats = extract_features(
        ds,
        encoder_graphs,
        settings.cache_dir,
        settings.text_max_len,
        settings.encode_batch,
        progress,
        settings.feature_engine,
        settings.ray_address,
    )
    t_feat = time.time()
    if space is None:
        U, I, id_log = train_id_model_checked(ds.n_users, ds.n_items, split, settings, progress)
    else:  # the team's own space: nothing to train (models/given_space.py)
        split = split.restrict_warm(space.has_vector)
        U, I = space.user_emb, training_vectors(space, split.warm_items)
        id_log = {"type": "given", "diagnostics": diagnostics(space, split, settings.seed), "history": []}
    seconds = {"features": t_feat - t0, "id_model": time.time() - t_feat}
    return Prepared(settings, ds, split, feats, U, I, id_log, space, seconds)


def train(settings, encoder_graphs, progress: bool = True) -> TrainResult:
    """Every stage on the settings' dataset; ``encoder_graphs`` (``export.encoders.encoder_graphs``) gives
    the ONNX encoders the features are computed with, on a feature-cache miss."""
    t0 = time.time()
    p = prepare(settings, encoder_graphs, progress)
    ds, space, split, feats, U, I, id_log = p.dataset, p.space, p.split, p.features, p.user_emb, p.item_emb, p.id_log
    t_feat = t0 + p.seconds["features"]
    ranking = p.ranking
    t_id = time.time()
    text_layer = finetune_log = None
    if settings.text_finetune:
        feats, text_layer, finetune_log = finetune_text_layer(ds.item_texts, feats, split, U, I, settings, progress)
    t_text = time.time()
    chosen = generator_candidates(feats, split, U, I, settings, progress, ranking)
    choices = {
        "id_model": id_choice(id_log, settings) if space is None else None,
        "text_finetune": None if finetune_log is None else {"epochs": finetune_log["best_epoch"]},
        "generator": chosen.chosen(),
    }
    proxy, proxy_log = chosen.model, chosen.log
    selection = {
        "chosen_on": "validation-cold NDCG@20 on the part held out from early stopping"
        if split.val_select_items is not None
        else "validation-cold NDCG@20",
        "validation": dict(chosen.scores),
        "generator": describe(chosen.weights),
        "generator_weights": chosen.weights,
        "served": "proxy",
        "fusion_temperature": chosen.fusion_temperature,
    }
    selection["validation"]["proxy"] = max(chosen.scores.values())
    t_proxy = time.time()
    experts = None
    if settings.diffusion:
        experts = fit_experts(
            feats, split, U, I, predict(proxy, feats, np.arange(ds.n_items)), settings, progress, ranking=ranking
        )
        choice, scores, margins = select_served(experts, U, split)
        experts.choice = choice if settings.served == "auto" else settings.served
        selection["validation"] |= scores
        selection["margins"] = margins
        selection["served"] = experts.choice
        selection["sampler"] = experts.sampler
        choices["experts"] = {
            "diffusion_epochs": experts.logs["diffusion"]["best_epoch"],
            "gate_epochs": experts.logs["gate"]["best_epoch"],
            "sampler": experts.sampler,
            "served": experts.choice,
        }
    if settings.served == "auto":
        check_selection(selection)
    result = TrainResult(
        settings,
        ds,
        split,
        feats,
        U,
        I,
        proxy,
        {},
        experts,
        generators=chosen.candidates,
        text_layer=text_layer,
        space=space,
    )
    calibration_log, t_experts = None, time.time()
    if settings.calibration and ranking and result.score == "dot":  # nothing to calibrate against / after unit length
        result.calibration, calibration_log = fit_calibration(U, I, result.served_item_emb(), split)
        choices["calibration"] = {"scale": result.calibration.scale, "shift": result.calibration.shift}
    t_cal = time.time()
    served = result.served_item_emb()
    result.metrics = {
        "run_id": uuid.uuid4().hex,
        "settings": settings.model_dump(mode="json"),
        "dataset": dataset_record(ds),
        "split": {
            "seed": settings.seed,
            "ratios": list(settings.split_ratios),
            "warm_items": len(split.warm_items),
            "val_cold_items": len(split.val_items),
            "test_cold_items": len(split.test_items),
            "train_interactions": len(split.train),
        },
        "id_model": {
            **{k: v for k, v in id_log.items() if k != "history"},
            "type": f"{id_log['type']}-bpr" if space is None else "given",
        },
        "proxy": {
            "type": "generator",
            "config": proxy.cfg.to_dict(),
            **{k: v for k, v in proxy_log.items() if k != "history"},
        },
        "selection": selection,
        "choices": choices,
        "served": served_record(
            result,
            "the evaluation split's training part: its warm items and their training "
            "interactions (coldproxy train --no-refit, or the package served before the refit)",
        ),
        "test": evaluate_split(U, served, split),  # items only: U holds the items' queries
        "test_protocol": "users" if ranking else "self-retrieval: each test item is found by its own given vector",
        "test_uncalibrated": evaluate_split(U, result.served_item_emb(calibrated=False), split)["all"],
        "seconds": {
            "features": t_feat - t0,
            "id_model": t_id - t_feat,
            "text_finetune": t_text - t_id,
            "proxy": t_proxy - t_text,
            "diffusion+gate": t_experts - t_proxy,
            "calibration": t_cal - t_experts,
        },
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


def id_choice(id_log: dict, settings) -> dict:
    """The ID model the evaluation kept (a fallback's architecture and L2 when one won) and its epoch count."""
    kept = id_log.get("fallback", {}).get("chosen", settings.id_model)
    return {
        "id_model": id_log["type"],
        "id_reg": settings.id_reg * (10 if kept.endswith("-l2x10") else 1),
        "epochs": id_log["best_epoch"],
    }


def dataset_record(ds: Dataset) -> dict:
    return ds.provenance | {"name": ds.name, "users": ds.n_users, "items": ds.n_items, "interactions": len(ds.items)}


def served_record(result: TrainResult, fit_on: str) -> dict:
    """What a package from ``result`` serves and was fit on: the interactions its ID space and generators trained
    on, the items it serves by their ID vector and by their proxy, its users, and the interactions it leaves out of
    recommendations."""
    user_ids, _, rows, _ = result.package_tables()
    return {
        "refit": result.refit,
        "fit_on": fit_on,
        "training_interactions": len(result.split.train),
        "users": len(user_ids),
        "items_by_id": len(rows),
        "items_by_proxy": result.dataset.n_items - len(rows),
        "seen_interactions": len(result.dataset.seen()),
    }
