"""What the training stages share: seeding for bit-reproducible runs, BPR, early stopping, and the epoch loop
(``fit``)."""

from __future__ import annotations

import random
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm


def seed_everything(seed: int) -> np.random.Generator:
    """Seed python, numpy and torch, and make torch deterministic; returns a numpy generator."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)
    return np.random.default_rng(seed)


def use_usable_cores() -> int:
    """torch's intra-op threads = the cores this process may run on (its CPU affinity: a container's cpuset, taskset);
    torch's own default counts the host's cores, which oversubscribes a pod pinned to a few of many. Returns it."""
    from coldproxy.config import usable_cores

    torch.set_num_threads(usable_cores())
    return torch.get_num_threads()


SEED_STRIDE = 1000  # the j-th of several models trained from one seed s uses seed s + SEED_STRIDE * j


def nth_seed(seed: int, j: int) -> int:
    """The seed of the j-th model of an ensemble started from ``seed`` (j = 0 is ``seed`` itself)."""
    return seed + SEED_STRIDE * j


def epoch_rows(rng: np.random.Generator, n: int, batch: int, steps: int) -> np.ndarray:
    """The rows of ``n`` an epoch visits, in order: all of them shuffled, or, with ``steps`` > 0 and more rows
    than ``steps`` batches hold, a fresh uniform sample of ``steps * batch`` (a fixed budget per epoch, so an
    epoch's cost stops growing with the data). Under the budget the draw is the same as without one."""
    order = rng.permutation(n)
    return order[: steps * batch] if steps > 0 and n > steps * batch else order


def bpr_loss(pos_scores: torch.Tensor, neg_scores: torch.Tensor) -> torch.Tensor:
    """Bayesian personalised ranking: mean of -ln sigma(s_ui - s_uj)."""
    return -F.logsigmoid(pos_scores - neg_scores).mean()


class EarlyStopping:
    """Keeps the best validation score's snapshot and its epoch; says stop after ``patience`` checks without a gain.

    With ``epochs`` (a refit on all the data, ``models.items.refit``) nothing is validated: the loop runs exactly
    ``epochs`` epochs (``span``) and keeps the last one's weights (``last``) -- the evaluation's chosen epoch count."""

    def __init__(self, patience: int, epochs: int | None = None):
        self.patience, self.best, self.state, self._bad = patience, -1.0, None, 0
        self.best_epoch, self.epochs, self.epochs_run = 0, epochs, 0

    @property
    def validating(self) -> bool:
        return self.epochs is None

    def span(self, most: int) -> range:
        """The epochs to run: up to ``most`` while validating, else exactly the fixed count."""
        return range(most if self.epochs is None else self.epochs)

    def last(self, epoch: int, snapshot) -> None:
        """A fixed-epoch run: ``snapshot()`` once the last epoch (0-based ``epoch``) is done."""
        if epoch + 1 == self.epochs:
            self.state, self.best_epoch = snapshot(), self.epochs

    def step(self, score: float, snapshot, epoch: int = 0) -> bool:
        """``snapshot()`` is called only on a new best (``epoch``, 1-based, recorded with it). Returns True when
        training should stop."""
        if score > self.best:
            self.best, self.state, self._bad, self.best_epoch = score, snapshot(), 0, epoch
            return False
        self._bad += 1
        return self._bad >= self.patience


def fit(
    epochs: int,
    step: Callable[[int], dict],
    score: Callable[[], dict],
    stopper: EarlyStopping,
    snapshot: Callable[[], object],
    *,
    desc: str,
    progress: bool = True,
    eval_every: int = 1,
    criterion: Callable[[dict], float] | None = None,
    log_unscored: bool = True,
) -> list[dict]:
    """The epoch loop the training stages share. ``step(epoch)`` trains one epoch (0-based) and returns its numbers
    for the log (``loss`` at least). While validating, every ``eval_every`` epochs and at the last of ``epochs``,
    ``score()`` returns the validation numbers; ``criterion`` makes one number of the entry the early stopping follows
    (default: the first number ``score`` returned), and ``snapshot()`` is what a new best keeps. In a fixed-epoch run
    (``stopper.epochs``: a refit) nothing is scored and the last epoch's snapshot is kept. The log: an entry an epoch
    (``log_unscored`` False: only the scored ones while validating); ``stopper.epochs_run`` says how many ran."""
    log: list[dict] = []
    bar = tqdm(stopper.span(epochs), desc=desc, disable=not progress)
    for epoch in bar:
        entry = {"epoch": epoch + 1} | step(epoch)
        stopper.epochs_run = epoch + 1
        due = stopper.validating and ((epoch + 1) % eval_every == 0 or epoch + 1 == epochs)
        if due:
            scores = score()
            entry |= scores
        if due or log_unscored or not stopper.validating:
            log.append(entry)
        bar.set_postfix({k: f"{v:.4f}" for k, v in entry.items() if k != "epoch" and isinstance(v, float)})
        if not stopper.validating:
            stopper.last(epoch, snapshot)
        elif due and stopper.step(criterion(entry) if criterion else next(iter(scores.values())), snapshot, epoch + 1):
            break
    return log
