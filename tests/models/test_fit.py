"""``models.training.fit``, the epoch loop the training stages share: it scores when due, keeps the best epoch's
snapshot, stops after ``patience`` checks without a gain, and in a fixed-epoch run (a refit) scores nothing and keeps
the last epoch."""

from __future__ import annotations

from models.training import EarlyStopping, fit


def run(scores: list[float], stopper: EarlyStopping, **kw) -> tuple[list[dict], list[int], list[int]]:
    """``fit`` over a scripted validation curve; returns the log, the epochs stepped and the epochs scored."""
    stepped, scored, state = [], [], {"epoch": -1}

    def step(epoch: int) -> dict:
        stepped.append(epoch)
        state["epoch"] = epoch
        return {"loss": 1.0 / (epoch + 1)}

    def score() -> dict:
        scored.append(state["epoch"])
        return {"val": scores[state["epoch"]], "other": 0.0}

    log = fit(len(scores), step, score, stopper, lambda: state["epoch"], desc="test", progress=False, **kw)
    return log, stepped, scored


def test_it_keeps_the_best_epoch_and_stops_after_patience_checks_without_a_gain():
    stopper = EarlyStopping(patience=2)
    log, stepped, scored = run([0.1, 0.3, 0.2, 0.25, 0.9, 0.95], stopper)
    assert stepped == [0, 1, 2, 3] and scored == stepped  # two checks below 0.3: stop before the 0.9 is seen
    assert stopper.state == 1 and stopper.best == 0.3 and stopper.best_epoch == 2 and stopper.epochs_run == 4
    assert [e["epoch"] for e in log] == [1, 2, 3, 4] and log[1] == {"epoch": 2, "loss": 0.5, "val": 0.3, "other": 0.0}


def test_it_scores_every_eval_every_epochs_and_at_the_last_and_may_log_only_those():
    stopper = EarlyStopping(patience=5)
    log, stepped, scored = run([0.1, 0.2, 0.3, 0.4, 0.5], stopper, eval_every=2, log_unscored=False)
    assert stepped == [0, 1, 2, 3, 4] and scored == [1, 3, 4]
    assert [e["epoch"] for e in log] == [2, 4, 5] and stopper.state == 4


def test_a_criterion_chooses_what_the_stopping_follows():
    stopper = EarlyStopping(patience=1)
    run([0.5, 0.1, 0.9], stopper, criterion=lambda e: -e["val"])
    assert stopper.state == 1 and stopper.best == -0.1 and stopper.epochs_run == 3


def test_a_fixed_epoch_run_scores_nothing_and_keeps_the_last_epoch():
    stopper = EarlyStopping(patience=1, epochs=3)
    log, stepped, scored = run([0.9, 0.1, 0.1, 0.1, 0.1], stopper)
    assert stepped == [0, 1, 2] and scored == [] and stopper.state == 2 and stopper.best_epoch == 3
    assert all("val" not in e for e in log) and len(log) == 3
