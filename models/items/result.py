"""What a training returns (``TrainResult``): the dataset, its split, the ID space and the served models, and the
package's tables derived from them -- the items served by their ID vector, every other catalogue item served by its
proxy, and every user's interactions (what recommendations leave out). An evaluation and a refit return the same type.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from coldproxy.id_space import normalise_rows
from models.data import Dataset
from models.features import Features
from models.given_space import GivenSpace
from models.items.calibration import Calibration
from models.items.experts import Experts, served_cold
from models.items.generator import ProxyGenerator, RoutedGenerator
from models.items.proxy_training import predict
from models.split import ColdStartSplit


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
    refit: bool = False  # trained on all the data with an evaluation's choices (models.items.refit)

    @property
    def score(self) -> str:
        return "dot" if self.space is None else self.space.info["score"]

    def served_item_emb(self, calibrated: bool = True) -> np.ndarray:
        """What the service would answer per item: ID embedding if warm; for a cold item the proxy,
        or the gate's mix of proxy and diffusion proxy when those stages were trained, calibrated
        when a calibration was fitted (and ``calibrated``), unit-length in a cosine space."""
        out = self.item_emb.copy()
        cold = np.setdiff1d(np.arange(self.dataset.n_items), self.split.warm_items)
        out[cold] = (
            predict(self.proxy, self.features, cold) if self.experts is None else served_cold(self.experts, cold)[0]
        )
        if calibrated and self.calibration is not None:
            out[cold] = self.calibration.apply(out[cold])
        if self.score == "cosine":
            out[cold] = normalise_rows(out[cold])
        return out

    def package_proxies(self, served: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The catalogue items the package has no ID vector for -- held out by the evaluation's split, without a
        positive interaction, without a given vector -- and their served proxies (``served``: ``served_item_emb()``
        when computed already): (item rows, vectors). The package serves them, as the service would a new item."""
        rows = np.setdiff1d(np.arange(self.dataset.n_items), self.package_tables()[2])
        return rows, (self.served_item_emb() if served is None else served)[rows]

    def package_tables(self) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
        """What the package serves from its ID space: (user IDs, user vectors, warm item rows, their vectors). A
        given space: every item with a vector, and its users (none when only item vectors were given)."""
        if self.space is None:
            return self.dataset.user_ids, self.user_emb, self.split.warm_items, self.item_emb[self.split.warm_items]
        items = self.space.package_items
        if not self.space.ranking:
            return [], np.zeros((0, self.user_emb.shape[1]), np.float32), items, self.space.item_emb[items]
        return self.dataset.user_ids, self.user_emb, items, self.space.item_emb[items]
