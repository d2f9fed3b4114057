"""The candidate generators and the served one (issue 21): the fused generator and, with ``select_modalities``,
text-only and image-only ones, each from ``generator_seeds`` seeds; their fusion temperatures and blend chosen on
validation (``generator_candidates``). A refit on all the data (``models.items.refit``) trains the served members
again for the epochs the evaluation chose and assembles them with its weights and temperatures
(``refit_generators``): nothing is chosen anew.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from torch import nn

from models.evaluate import validation_cold_ndcg
from models.features import Features
from models.items.blend import greedy_blend
from models.items.generator import BlendedGenerator, GeneratorConfig, ProxyGenerator, RoutedGenerator, layer_groups
from models.items.proxy_training import predict, train_proxy, warm_norm
from models.split import ColdStartSplit
from models.training import nth_seed

MODALITIES = {"both": (1, 1), "text": (1, 0), "image": (0, 1)}


def build_generator(features: Features, split: ColdStartSplit, item_emb: np.ndarray, settings) -> ProxyGenerator:
    """A generator configured from the settings; text layer groups by k-means over warm items' states."""
    warm = split.warm_items
    with_text = warm[features.has_text[warm]][:2000]
    groups = (
        layer_groups(features.text_layers[with_text], settings.proxy_layer_groups, settings.seed)
        if len(with_text)
        else []
    )
    cfg = GeneratorConfig(
        text_dim=features.text.shape[1],
        image_dim=features.image.shape[1],
        n_text_layers=features.text_layers.shape[1],
        image_stage_dim=features.image_stages.shape[1],
        out_dim=item_emb.shape[1],
        hidden=settings.proxy_hidden,
        experts=settings.proxy_experts,
        top_k=settings.proxy_top_k,
        expert_type=settings.proxy_expert_type,
        fusion=settings.proxy_fusion,
        fine=settings.proxy_fine,
        modalities=MODALITIES[settings.proxy_modalities],
        text_groups=groups,
        dropout=settings.proxy_dropout,
        init_scale=warm_norm(item_emb, split),
    )
    return ProxyGenerator(cfg)


def generator_weights(settings) -> dict[str, float]:
    return {
        "align": settings.lambda_align,
        "adapter": settings.lambda_adapter,
        "fusion": settings.lambda_fusion,
        "pal": settings.lambda_pal,
    }


def fit_generator(
    features,
    split,
    user_emb,
    item_emb,
    settings,
    desc: str = "proxy generator",
    progress: bool = True,
    ranking: bool = True,
    epochs: int | None = None,
):
    """One generator. Without ``ranking`` (a given space of item vectors only) its losses are the alignment ones:
    MSE to the item's vector (``proxy_mse_weight``), PAL and MAMEX's auxiliary losses, over the warm items.
    ``epochs``: exactly that many, nothing validated (a refit)."""
    return train_proxy(
        lambda: build_generator(features, split, item_emb, settings),
        features,
        split,
        user_emb,
        item_emb,
        settings,
        bpr_weight=1.0 if ranking else 0.0,
        mse_weight=settings.lambda_mse if ranking else settings.proxy_mse_weight,
        weights=generator_weights(settings),
        desc=desc,
        progress=progress,
        epochs=epochs,
    )


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
    epochs: dict[str, int] = field(default_factory=dict)  # per generator: the epoch whose weights it kept

    def chosen(self) -> dict:
        """What a refit needs to train and assemble the served generator again: the served members' epochs and
        fusion temperatures (the first fused generator's always: it serves the items a member lacks the modality
        of), and the blend's weights."""
        members = dict.fromkeys([next(iter(self.epochs)), *self.weights])
        return {
            "weights": dict(self.weights),
            "candidates": len(self.epochs),
            "members": {
                m: {
                    "epochs": self.epochs[m],
                    "fusion_temperature": self.fusion_temperature.get(m, {}).get("chosen", 1.0),
                }
                for m in members
            },
        }


def generator_candidates(
    features: Features,
    split: ColdStartSplit,
    user_emb: np.ndarray,
    item_emb: np.ndarray,
    settings,
    progress: bool = True,
    ranking: bool = True,
) -> GeneratorChoice:
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

    both = (
        settings.select_modalities
        and settings.proxy_modalities == "both"
        and features.has_text.any()
        and features.has_image.any()
    )
    fitted, temperatures, fused = {}, {}, None  # fitted: name -> (model, log)
    for j in range(settings.generator_seeds):
        tag, s_j = (
            ("", settings)
            if j == 0
            else (f"#{j + 1}", settings.model_copy(update={"seed": nth_seed(settings.seed, j)}))
        )
        gen, lg = fit_generator(
            features, split, user_emb, item_emb, s_j, desc=f"proxy generator{tag}", progress=progress, ranking=ranking
        )
        temperatures[settings.proxy_modalities + tag] = choose_fusion_temperature(
            gen, features, val, score, settings.proxy_fusion_temperatures
        )
        fused = gen if j == 0 else fused
        fitted[settings.proxy_modalities + tag] = (gen, lg)
        for m in ("text", "image") if both else ():
            single, lg = fit_generator(
                features,
                split,
                user_emb,
                item_emb,
                s_j.model_copy(update={"proxy_modalities": m}),
                desc=f"proxy generator ({m} only){tag}",
                progress=progress,
                ranking=ranking,
            )
            fitted[m + tag] = (RoutedGenerator(single, fused).eval(), lg)
    seeds: dict[str, list[str]] = {}  # modalities -> its generators' names, one per seed
    for name in fitted:
        seeds.setdefault(name.partition("#")[0], []).append(name)
    outputs = {m: np.mean([predict(fitted[n][0], features, val) for n in names], axis=0) for m, names in seeds.items()}
    by_modality, blend_score, singles = greedy_blend(
        outputs, score, settings.blend_rounds, prefer=settings.proxy_modalities
    )
    # seeds share their modality's weight
    weights = {n: w / len(seeds[m]) for m, w in by_modality.items() for n in seeds[m]}
    scores = {f"generator:{m}": v for m, v in singles.items()}
    served = assemble({m: model for m, (model, _) in fitted.items()}, weights, fused, settings.proxy_modalities)
    if len(weights) > 1:
        scores["generator:blend"] = blend_score
    heaviest = max(weights, key=weights.__getitem__)
    return GeneratorChoice(
        served,
        fitted[heaviest][1],
        scores,
        {m: model for m, (model, _) in fitted.items()},
        weights,
        temperatures,
        {m: lg["best_epoch"] for m, (_, lg) in fitted.items()},
    )


def assemble(
    models: dict[str, nn.Module], weights: dict[str, float], fused: ProxyGenerator, fused_name: str
) -> nn.Module:
    """The served generator: the one member with all the weight as it is, else the blend of the members (each
    single-modality one as ``RoutedGenerator`` serves it: ``fused`` where its modality is absent)."""
    order = sorted(weights, key=lambda m: -weights[m])
    if len(order) == 1:
        return models[order[0]]
    members = {m: getattr(models[m], "single", models[m]) for m in order if m != fused_name}
    return BlendedGenerator(fused, members, weights).eval()


def refit_generators(
    features: Features,
    split: ColdStartSplit,
    user_emb: np.ndarray,
    item_emb: np.ndarray,
    settings,
    chosen: dict,
    progress: bool = True,
    ranking: bool = True,
) -> tuple[nn.Module, dict]:
    """The served generator trained again on ``split`` (all the data) from the evaluation's ``chosen``
    (``GeneratorChoice.chosen``): each served member from its own seed and modalities for its chosen epochs, its
    fusion temperature set, assembled with the chosen weights. Returns (served generator, logs by member)."""
    models, logs, fused = {}, {}, None
    for name, member in chosen["members"].items():
        modalities, _, j = name.partition("#")
        s_j = settings.model_copy(
            update={"proxy_modalities": modalities, "seed": nth_seed(settings.seed, int(j) - 1 if j else 0)}
        )
        gen, logs[name] = fit_generator(
            features,
            split,
            user_emb,
            item_emb,
            s_j,
            desc=f"refit: proxy generator {name}",
            progress=progress,
            ranking=ranking,
            epochs=member["epochs"],
        )
        gen.cfg.fusion_temperature = float(member["fusion_temperature"])
        fused = gen if fused is None else fused  # the first member is the first fused generator
        models[name] = gen if modalities == settings.proxy_modalities else RoutedGenerator(gen, fused).eval()
    return assemble(models, chosen["weights"], fused, settings.proxy_modalities), logs


def choose_fusion_temperature(
    model: ProxyGenerator, features: Features, items: np.ndarray, score, grid: list[float]
) -> dict:
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
