"""The proxy generator: modality MoE adapters, adaptive fusion, coarse -> fine alignment to the ID space.

MAMEX (seeds/000, §3): per modality m a mixture of K experts E_m^k (linear, or UniM²Rec-style
parametric whitening (x - b_k) W_k) with a top-k sparse router (eq. 3) and the load-balance loss
(eq. 4); an adaptive fusion gate over the concatenated modality embeddings (eq. 5-6) with its
balance loss (eq. 7) and the alignment loss (eq. 8). A missing modality is masked out of the gate
(its weight is exactly 0), at training and at serving time.

IDProxy (seeds/001, §3): the coarse proxy is the l2-normalised projection of the fused embedding,
trained with the in-batch contrastive PAL loss (eq. 1) against l2-normalised warm ID embeddings;
the fine proxy comes from the encoders' multi-layer states (text layers averaged within the
shallow / middle / deep groups that k-means picks over layers, §3.2.1; image stage outputs)
through a small adaptor, and p_fine = W_c p_coarse + r * p_raw_fine with
r = sigmoid(W_g [p_coarse, p_raw_fine]) (§3.2.2). The ranking objective (BPR against the ID
model's user embeddings) trains p_fine end to end, as IDProxy's CTR stage does.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import faiss
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

NEG = -1e4  # additive mask for softmax logits (finite, so ONNX Runtime and torch agree)


@dataclass
class GeneratorConfig:
    text_dim: int
    image_dim: int
    n_text_layers: int
    image_stage_dim: int
    out_dim: int
    hidden: int = 256
    experts: int = 4  # K, per modality
    top_k: int = 1  # k experts routed per item (top-1 was best on MovieLens validation)
    expert_type: str = "linear"  # "linear" | "whitening"
    fusion: str = "gate"  # "gate" (adaptive, eq. 5) | "mean" (ablation: average of present modalities)
    fusion_temperature: float = 1.0  # the gate's softmax temperature; trained at 1, chosen on validation after
    fine: bool = True  # False: coarse only (p = W_c p_coarse)
    modalities: tuple[int, int] = (1, 1)  # (text, image) used at all; (1, 0) = text-only ablation
    text_groups: list[int] = field(default_factory=list)  # layer -> group (k-means), len n_text_layers
    dropout: float = 0.1
    init_scale: float = 1.0  # initial W_c = init_scale * I (mean warm ID-embedding norm)

    def to_dict(self) -> dict:
        return asdict(self)


def kl_to_uniform(p: torch.Tensor) -> torch.Tensor:
    """KL(p || uniform) for one distribution p [K] (eq. 4 and 7); 0 exactly when p is uniform."""
    p = p.clamp_min(1e-12)
    return (p * p.log()).sum() + np.log(p.numel())


def pal_loss(proxies: torch.Tensor, targets: torch.Tensor, temperature: float) -> torch.Tensor:
    """IDProxy eq. 1: in-batch InfoNCE of l2-normalised proxies against their l2-normalised ID embeddings."""
    logits = F.normalize(proxies, dim=-1) @ F.normalize(targets, dim=-1).T / temperature
    return F.cross_entropy(logits, torch.arange(len(logits)))


class MoEAdapter(nn.Module):
    """K experts, a router, top-k sparse gating (eq. 3). Returns (z [B, H], router probabilities [B, K])."""

    def __init__(self, in_dim: int, out_dim: int, experts: int, top_k: int, expert_type: str):
        super().__init__()
        if not 1 <= top_k <= experts:
            raise ValueError(f"top_k must be in [1, experts]: {top_k} of {experts}")
        self.k, self.expert_type = top_k, expert_type
        self.weight = nn.Parameter(torch.randn(experts, in_dim, out_dim) / np.sqrt(in_dim))
        self.bias = nn.Parameter(torch.zeros(experts, in_dim if expert_type == "whitening" else out_dim))
        self.router = nn.Linear(in_dim, experts)

    def gates(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(sparse gate weights with exactly k non-zeros per row, full router softmax).

        The k kept weights are the router's probabilities themselves, not renormalised (as in
        Switch / GShard): renormalising would make a top-1 gate the constant 1, and the router
        would get no gradient from the task loss.
        """
        logits = self.router(x)
        probs = logits.softmax(-1)
        kth = logits.topk(self.k, dim=-1).values[:, -1:]
        return probs * (logits >= kth).to(probs.dtype), probs

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        g, probs = self.gates(x)
        if self.expert_type == "whitening":  # UniM²Rec parametric whitening: (x - b_k) W_k
            out = torch.einsum("bki,kio->bko", x[:, None, :] - self.bias[None], self.weight)
        else:
            out = torch.einsum("bi,kio->bko", x, self.weight) + self.bias[None]
        return (g[..., None] * out).sum(1), probs


class ProxyGenerator(nn.Module):
    def __init__(self, cfg: GeneratorConfig):
        super().__init__()
        self.cfg = c = cfg
        self.out_dim = c.out_dim
        groups = c.text_groups or layer_groups_contiguous(c.n_text_layers, 3)
        n_groups = max(groups) + 1
        avg = torch.zeros(n_groups, c.n_text_layers)
        for layer, g in enumerate(groups):
            avg[g, layer] = 1.0
        self.register_buffer("group_avg", avg / avg.sum(1, keepdim=True))
        self.register_buffer("enabled", torch.tensor(c.modalities, dtype=torch.float32))
        for name, shape in (
            ("text", (c.text_dim,)),
            ("image", (c.image_dim,)),
            ("text_layers", (c.n_text_layers, c.text_dim)),
            ("image_stages", (c.image_stage_dim,)),
        ):
            self.register_buffer(f"{name}_mean", torch.zeros(shape))
            self.register_buffer(f"{name}_std", torch.ones(shape))
        self.adapters = nn.ModuleList(
            [MoEAdapter(d, c.hidden, c.experts, c.top_k, c.expert_type) for d in (c.text_dim, c.image_dim)]
        )
        self.fusion_gate = nn.Linear(2 * c.hidden, 2)
        self.coarse = nn.Linear(c.hidden, c.out_dim)
        self.w_c = nn.Linear(c.out_dim, c.out_dim, bias=False)
        nn.init.eye_(self.w_c.weight)
        with torch.no_grad():
            self.w_c.weight.mul_(c.init_scale)
        if c.fine:
            fine_in = n_groups * c.text_dim + c.image_stage_dim + 2
            self.adaptor = nn.Sequential(
                nn.Linear(fine_in, c.hidden), nn.GELU(), nn.Dropout(c.dropout), nn.Linear(c.hidden, c.out_dim)
            )
            self.w_g = nn.Linear(2 * c.out_dim, c.out_dim)

    def fit_normalisation(self, features) -> None:
        """Standardisation statistics from (warm) training items, baked into the graph as buffers."""
        for name, present in (
            ("text", features.has_text),
            ("image", features.has_image),
            ("text_layers", features.has_text),
            ("image_stages", features.has_image),
        ):
            x = getattr(features, name)
            x = x[present] if present.any() else x
            getattr(self, f"{name}_mean").copy_(torch.from_numpy(x.mean(0)))
            getattr(self, f"{name}_std").copy_(torch.from_numpy(x.std(0) + 1e-4))

    def _norm(self, name: str, x: torch.Tensor) -> torch.Tensor:
        return (x - getattr(self, f"{name}_mean")) / getattr(self, f"{name}_std")

    def grouped_layers(self, text_layers: torch.Tensor) -> torch.Tensor:
        """[B, L, d] text states -> [B, G, d]: standardised, then averaged within each layer group."""
        return torch.einsum("gl,bld->bgd", self.group_avg, self._norm("text_layers", text_layers))

    @torch.no_grad()
    def training_inputs(self, features, batch: int = 4096) -> dict[str, torch.Tensor]:
        """Every item's inputs as the forward first transforms them: text, image and image stages standardised, the
        text layers standardised and grouped (``grouped_layers``), and the modality mask as it is. None of it has a
        trained parameter (the statistics are fixed before training), so training computes it once (issue 40: the
        groups were a sixth of a step's time, the standardisations a few per cent more) and feeds its rows to a
        forward with ``prepared=True``."""
        raw = torch.from_numpy(features.text_layers)
        chunks = [self.grouped_layers(raw[s : s + batch]) for s in range(0, len(raw), batch)]
        layers = torch.cat(chunks) if chunks else raw
        return {
            "text": self._norm("text", torch.from_numpy(features.text)),
            "image": self._norm("image", torch.from_numpy(features.image)),
            "text_layers": layers,
            "image_stages": self._norm("image_stages", torch.from_numpy(features.image_stages)),
            "mask": torch.from_numpy(features.mask),
        }

    def forward(self, text, image, text_layers, image_stages, mask, prepared: bool = False) -> dict[str, torch.Tensor]:
        """``prepared``: the inputs are already ``training_inputs``' rows (training); otherwise the raw features."""
        c = self.cfg
        norm = (lambda name, x: x) if prepared else self._norm
        mask = mask * self.enabled
        mt, mi = mask[:, 0:1], mask[:, 1:2]
        # a modality this generator does not use at all is zero in every row: in training its adapter runs on one
        # zero row, broadcast, and the fine stage's first layer skips its columns (the same outputs, a fifth to a
        # third of a single-modality generator's step; issue 40). Export traces the full graph (eval mode)
        skip = self.training and 0 in c.modalities
        z_t, probs_t = (
            self.adapters[0](norm("text", text) * mt)
            if not (skip and not c.modalities[0])
            else self._unused(0, len(mask))
        )
        z_i, probs_i = (
            self.adapters[1](norm("image", image) * mi)
            if not (skip and not c.modalities[1])
            else self._unused(1, len(mask))
        )
        if c.fusion == "gate":
            logits = self.fusion_gate(torch.cat([z_t, z_i], dim=-1)) / c.fusion_temperature + (1.0 - mask) * NEG
            alpha = logits.softmax(-1) * (mask.sum(1, keepdim=True) > 0).to(logits.dtype)
        else:
            alpha = mask / mask.sum(1, keepdim=True).clamp_min(1.0)
        e = alpha[:, 0:1] * z_t + alpha[:, 1:2] * z_i
        p_coarse = F.normalize(self.coarse(e), dim=-1)
        proxy = self.w_c(p_coarse)
        if c.fine:
            layers = text_layers if prepared else self.grouped_layers(text_layers)
            if skip:
                parts = ([layers.flatten(1) * mt] if c.modalities[0] else []) + (
                    [norm("image_stages", image_stages) * mi] if c.modalities[1] else []
                )
                first = self.adaptor[0]
                cols = self.fine_columns()
                raw = self.adaptor[1:](F.linear(torch.cat([*parts, mask], dim=-1), first.weight[:, cols], first.bias))
            else:
                raw = self.adaptor(
                    torch.cat([layers.flatten(1) * mt, norm("image_stages", image_stages) * mi, mask], dim=-1)
                )
            r = torch.sigmoid(self.w_g(torch.cat([p_coarse, raw], dim=-1)))
            proxy = proxy + r * raw
        return {
            "proxy": proxy,
            "coarse": p_coarse,
            "alpha": alpha,
            "e": e,
            "z": (z_t, z_i),
            "router": (probs_t, probs_i),
            "mask": mask,
        }

    def _unused(self, m: int, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Modality ``m``'s adapter on a zero input, for ``n`` rows: what it gives every row when unused."""
        z, probs = self.adapters[m](self.adapters[m].router.weight.new_zeros(1, self.adapters[m].router.in_features))
        return z.expand(n, -1), probs.expand(n, -1)

    def fine_columns(self) -> torch.Tensor:
        """The fine stage's input columns (text-layer groups, image stages, mask) of the modalities used at all."""
        c = self.cfg
        text = c.text_dim * self.group_avg.shape[0]
        keep = ([torch.arange(text)] if c.modalities[0] else []) + (
            [torch.arange(text, text + c.image_stage_dim)] if c.modalities[1] else []
        )
        return torch.cat([*keep, torch.arange(text + c.image_stage_dim, text + c.image_stage_dim + 2)])

    def aux_losses(self, out: dict, targets: torch.Tensor | None, pal_temperature: float) -> dict[str, torch.Tensor]:
        """Eq. 4 (adapter balance), eq. 7 (fusion balance), eq. 8 (alignment), IDProxy eq. 1 (PAL)."""
        mask = out["mask"]
        losses = {
            "adapter": sum(
                (
                    kl_to_uniform(p[mask[:, m] > 0].mean(0))
                    for m, p in enumerate(out["router"])
                    if (mask[:, m] > 0).any()
                ),
                torch.zeros(()),
            )
        }  # a tensor when no modality is present
        both = mask.sum(1) == 2
        losses["fusion"] = (
            kl_to_uniform(out["alpha"][both].mean(0)) if self.cfg.fusion == "gate" and both.any() else torch.zeros(())
        )
        losses["align"] = sum(
            (((out["e"] - z) ** 2).mean(-1) * mask[:, m]).sum() / mask[:, m].sum().clamp_min(1.0)
            for m, z in enumerate(out["z"])
        )
        losses["pal"] = pal_loss(out["coarse"], targets, pal_temperature) if targets is not None else torch.zeros(())
        return losses

    def serving(self) -> nn.Module:
        return _Serving(self)


def route(single: dict, fused: dict, mask: torch.Tensor, modality: int) -> dict[str, torch.Tensor]:
    """A single-modality generator's outputs where its modality is present, the fused one's elsewhere."""
    has = (mask[:, modality : modality + 1] > 0).to(mask.dtype)
    return {k: has * single[k] + (1.0 - has) * fused[k] for k in ("proxy", "alpha")}


class RoutedGenerator(nn.Module):
    """A single-modality generator wherever its modality is present, the fused generator otherwise:
    what a package serves when a single-modality generator won on validation, so that an item sent
    with only the other modality still gets a proxy (and the choice cannot lose on such items)."""

    def __init__(self, single: ProxyGenerator, fused: ProxyGenerator):
        super().__init__()
        if single.cfg.modalities not in ((1, 0), (0, 1)):
            raise ValueError(f"routing needs a single-modality generator, not modalities {single.cfg.modalities}")
        self.single, self.fused = single, fused
        self.cfg, self.out_dim = single.cfg, single.out_dim
        self.modality = single.cfg.modalities.index(1)

    def forward(self, text, image, text_layers, image_stages, mask) -> dict[str, torch.Tensor]:
        a, b = (g(text, image, text_layers, image_stages, mask) for g in (self.single, self.fused))
        return route(a, b, mask, self.modality)

    def serving(self) -> nn.Module:
        return _Serving(self)


class BlendedGenerator(nn.Module):
    """A weighted average of the fused generator and further members -- single-modality generators, each
    as ``RoutedGenerator`` serves it, and fused generators trained from other seeds, as they are -- with
    weights chosen on validation by ``models.items.blend.greedy_blend``; every generator runs once, and it
    exports as one proxy graph."""

    def __init__(self, fused: ProxyGenerator, singles: dict[str, ProxyGenerator], weights: dict[str, float]):
        """``singles``: the other members by name ("text", "image", "both#2"); ``weights`` by name, the
        fused generator's under any other name (its modalities, "both"), absent where it weighs 0 (it
        still serves the items a single-modality member lacks the modality of)."""
        super().__init__()
        if len(weights) < 2 or abs(sum(weights.values()) - 1.0) > 1e-6 or not set(singles) <= set(weights):
            raise ValueError(f"a blend needs two or more members with weights summing to 1, not {weights}")
        self.fused, self.out_dim, self.cfg = fused, fused.out_dim, fused.cfg
        self.names = list(singles)
        self.singles = nn.ModuleList(singles[n] for n in self.names)
        self.weights = {n: float(w) for n, w in weights.items()}
        self.fused_weight = sum(w for n, w in self.weights.items() if n not in singles)

    def forward(self, text, image, text_layers, image_stages, mask) -> dict[str, torch.Tensor]:
        b = self.fused(text, image, text_layers, image_stages, mask)
        out = {k: self.fused_weight * b[k] for k in ("proxy", "alpha")}
        for name, member in zip(self.names, self.singles):
            o = member(text, image, text_layers, image_stages, mask)
            if member.cfg.modalities != (1, 1):
                o = route(o, b, mask, member.cfg.modalities.index(1))
            out = {k: out[k] + self.weights[name] * o[k] for k in out}
        return out

    def serving(self) -> nn.Module:
        return _Serving(self)


class _Serving(nn.Module):
    """What the model package's proxy graph computes: (proxy, fusion weights)."""

    def __init__(self, gen: nn.Module):
        super().__init__()
        self.gen = gen

    def forward(self, text, image, text_layers, image_stages, mask):
        out = self.gen(text, image, text_layers, image_stages, mask)
        return out["proxy"], out["alpha"]


def layer_groups_contiguous(n_layers: int, n_groups: int) -> list[int]:
    return [min(i * n_groups // n_layers, n_groups - 1) for i in range(n_layers)]


def linear_cka(a: np.ndarray, b: np.ndarray) -> float:
    """Linear CKA between two representations of the same items (rows)."""
    a = a - a.mean(0)
    b = b - b.mean(0)
    num = np.linalg.norm(a.T @ b) ** 2
    return float(num / (np.linalg.norm(a.T @ a) * np.linalg.norm(b.T @ b) + 1e-12))


def layer_groups(text_layers: np.ndarray, n_groups: int = 3, seed: int = 0) -> list[int]:
    """IDProxy §3.2.1: k-means over layers into shallow / middle / deep groups.

    Each layer is described by its row of the layer-by-layer linear-CKA matrix (how it relates to
    every other layer) over the given items; FAISS k-means clusters those rows; groups are then
    numbered by mean depth, so 0 is the shallowest.
    """
    n_layers = text_layers.shape[1]
    if n_layers <= n_groups:
        return list(range(n_layers))
    sim = np.array(
        [[linear_cka(text_layers[:, i], text_layers[:, j]) for j in range(n_layers)] for i in range(n_layers)],
        dtype=np.float32,
    )
    km = faiss.Kmeans(
        n_layers, n_groups, niter=50, seed=seed, min_points_per_centroid=1, max_points_per_centroid=10_000
    )
    km.train(np.ascontiguousarray(sim))
    _, assign = km.index.search(np.ascontiguousarray(sim), 1)
    assign = assign[:, 0]
    present = sorted(set(assign.tolist()), key=lambda g: np.mean(np.flatnonzero(assign == g)))
    rank = {g: r for r, g in enumerate(present)}
    return [rank[g] for g in assign.tolist()]
