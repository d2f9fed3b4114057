"""The refit: the package a product serves, trained on everything the data holds with the evaluation's choices frozen
(issue 55).

Evaluation and serving are two jobs. The evaluation (``models.items.train``) chooses every setting, expert and epoch
count on its split's validation items and reports the test split, which decides nothing. The refit then trains every
stage again on all the data, validating nothing and choosing nothing anew:

* the ID model on every positive, so every item with one is warm (a given ID space: every item with a vector), with
  the architecture and L2 the evaluation kept (a fallback's, when one won);
* the served generator's members only (not the candidates the blend left out), each from its own seed, with the
  chosen fusion temperatures and blend weights; the text layer, when it was fine-tuned;
* the diffusion expert with the chosen sampler (steps, start), and the cold-aware gate, which the evaluation trained on
  the warm interactions its ID model had not seen: a refit has none left, so it trains on every positive; the served
  expert as chosen;
* the calibration's chosen scale and shift, along the mean of the refit's warm ID vectors.

**The epoch rule** (written before any refit was measured): every stage runs exactly the epoch count whose weights
the evaluation kept (its best validation epoch), unchanged however much the data grew. An epoch is each loop's own
unit -- a pass over its rows, or the capped step budget where one is set (``id_steps_per_epoch``: the ID model's batch
grows instead; ``proxy_steps_per_epoch``: the generator's clicks are sampled afresh) -- so the refit makes as many
passes over the data as the evaluation did, and an uncapped loop takes more steps where there are more rows.

A refit reads the settings the evaluation recorded and refuses to run when today's differ on anything but where
things are (``check_settings``): its choices were made for those settings.
"""

from __future__ import annotations

import sys
import time
import uuid

import numpy as np
from tqdm.auto import tqdm

from coldproxy.errors import PackageError
from models.features import extract_features
from models.given_space import load_training_data, training_vectors
from models.idmodel import train_id_model
from models.items.calibration import Calibration
from models.items.candidates import refit_generators
from models.items.experts import fit_experts
from models.items.proxy_training import predict
from models.items.result import TrainResult
from models.items.text_finetune import finetune_text_layer
from models.items.train import dataset_record, served_record
from models.split import all_data_split
from models.training import use_usable_cores

# settings that say where things are, how fast they are computed or what happens after training, not what is
# trained: they may differ
PLACES = frozenset(
    {
        "data_dir",
        "cache_dir",
        "work_dir",
        "package_dir",
        "feature_engine",
        "ray_address",
        "encode_batch",
        "item_embeddings",
        "user_embeddings",
        "refit",
        "parity_items",
        "parity_tolerance",
    }
)
# what the refit's metrics carry over from the evaluation: the package reports them as the evaluation's
EVALUATION_KEYS = (
    "run_id",
    "dataset",
    "split",
    "choices",
    "selection",
    "test",
    "test_protocol",
    "test_uncalibrated",
    "decision",
    "served",
    "calibration",
)


def evaluation_record(metrics: dict) -> dict:
    """An evaluation's part of a package: its split, choices, validation scores and test metrics, and what it was
    fit on."""
    return {k: metrics[k] for k in EVALUATION_KEYS if k in metrics}


def check_settings(settings, evaluation: dict) -> None:
    """``PackageError`` when ``settings`` differ from those the evaluation ran with on anything but ``PLACES``."""
    recorded = evaluation.get("settings")
    if recorded is None:
        raise PackageError(
            "the evaluation checkpoint records no settings (an older release's): run `coldproxy train` again"
        )
    now = settings.model_dump(mode="json")
    changed = sorted(k for k in recorded.keys() | now.keys() if k not in PLACES and recorded.get(k) != now.get(k))
    if changed:
        raise PackageError(
            f"the settings differ from the evaluation's on {', '.join(changed)}: its choices were made "
            "for those; run `coldproxy train` again to evaluate these"
        )


def refit_estimate(evaluation: dict, training_interactions: int) -> float:
    """Seconds a refit is expected to take, from the evaluation's own stages: the ID model's steps grow with the
    positives (its validation left out, about a fifth), the generators are the served members of the candidates,
    the diffusion expert and gate as they were; features come from the cache, and export takes ~10 s."""
    sec, generators = evaluation.get("seconds", {}), evaluation.get("choices", {}).get("generator", {})
    grown = training_interactions / max(1, evaluation.get("split", {}).get("train_interactions", 1))
    share = min(1.0, len(generators.get("members", {})) / max(1, generators.get("candidates", 1)))
    return (
        0.8 * grown * sec.get("id_model", 0.0)
        + sec.get("text_finetune", 0.0)
        + share * sec.get("proxy", 0.0)
        + grown * sec.get("diffusion+gate", 0.0)
        + 10.0
    )


def refit(settings, evaluation: dict, encoder_graphs, progress: bool = True) -> TrainResult:
    """Train on all the settings' data with ``evaluation``'s choices (its ``metrics.json``): the module docstring."""
    t0 = time.time()
    check_settings(settings, evaluation)
    use_usable_cores()
    choices = evaluation["choices"]
    ds, space = load_training_data(settings)
    warm = np.flatnonzero(space.has_vector) if space is not None else np.unique(ds.items)
    split = all_data_split(ds, warm, settings.seed)
    if progress:
        expected = refit_estimate(evaluation, len(split.train))
        tqdm.write(
            f"refit on all the data: {len(split.train):,} interactions, {len(warm):,} warm items, "
            f"{ds.n_items - len(warm):,} served by proxy; expected ~{expected:.0f} s",
            file=sys.stderr,
        )
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
        c = choices["id_model"]
        U, I, id_log = train_id_model(
            ds.n_users,
            ds.n_items,
            split,
            settings.model_copy(update={"id_model": c["id_model"], "id_reg": c["id_reg"]}),
            progress,
            epochs=c["epochs"],
        )
    else:
        U, I, id_log = space.user_emb, training_vectors(space, warm), {"history": []}
    ranking = space is None or space.ranking
    t_id = time.time()
    text_layer = finetune_log = None
    if choices.get("text_finetune"):
        feats, text_layer, finetune_log = finetune_text_layer(
            ds.item_texts, feats, split, U, I, settings, progress, epochs=choices["text_finetune"]["epochs"]
        )
    t_text = time.time()
    proxy, generator_logs = refit_generators(feats, split, U, I, settings, choices["generator"], progress, ranking)
    t_proxy = time.time()
    experts = None
    if choices.get("experts"):
        experts = fit_experts(
            feats,
            split,
            U,
            I,
            predict(proxy, feats, np.arange(ds.n_items)),
            settings,
            progress,
            ranking=ranking,
            chosen=choices["experts"],
        )
        experts.choice = choices["experts"]["served"]
    result = TrainResult(
        settings, ds, split, feats, U, I, proxy, {}, experts, text_layer=text_layer, space=space, refit=True
    )
    if choices.get("calibration"):
        result.calibration = Calibration(
            choices["calibration"]["scale"],
            choices["calibration"]["shift"],
            I[warm].mean(0).astype(np.float32).tolist(),
        )
    logs = {
        "id_model": id_log,
        "text_finetune": finetune_log,
        **{f"generator {m}": lg for m, lg in generator_logs.items()},
        **(experts.logs if experts is not None else {}),
    }
    kept = {
        k: v
        for k, v in evaluation.items()
        if k in ("id_model", "proxy", "diffusion", "gate", "text_finetune", "id_space")
    }
    result.metrics = kept | {
        "run_id": uuid.uuid4().hex,
        "dataset": dataset_record(ds),
        "evaluation": evaluation_record(evaluation),
        "served": served_record(
            result,
            "all the data: every positive interaction, every item with one (a given "
            "space: every item with a vector), with the evaluation's choices",
        ),
        "refit": {stage: {k: v for k, v in lg.items() if k != "history"} for stage, lg in logs.items() if lg},
        "seconds": {
            "features": t_feat - t0,
            "id_model": t_id - t_feat,
            "text_finetune": t_text - t_id,
            "proxy": t_proxy - t_text,
            "diffusion+gate": time.time() - t_proxy,
        },
        "history": {stage: lg["history"] for stage, lg in logs.items() if lg},
    }
    if space is not None:
        result.metrics["id_space"] = space.info
    return result
