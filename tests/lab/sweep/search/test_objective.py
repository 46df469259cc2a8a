"""Pruning on per-epoch validation accuracy: a clearly worse trial is stopped by the real
pruner, through the progress callback a run calls after each epoch; and a trial's setting
is the one a grid point with the same values would have."""

from __future__ import annotations

import threading
from pathlib import Path

import optuna
import pytest

from convdrop import _io
from convdrop.lab.sweep.expand import build_sweep
from convdrop.lab.sweep.search.objective import (
    Search,
    _pruning,
    make_objective,
    trial_setting,
)
from convdrop.lab.sweep.search.settings import SearchSettings
from convdrop.lab.sweep.search.space import space_of
from convdrop.lab.sweep.search.study import make_pruner
from convdrop.lab.train.store import METRIC_FIELDS, RunPaths

EPOCHS = 10


def _study(pruner: str) -> optuna.Study:
    """Five finished trials whose validation accuracy climbs to 0.9 (the pruner's startup)."""
    study = optuna.create_study(direction="maximize", pruner=make_pruner(
        SearchSettings(trials=1, pruner=pruner), EPOCHS))
    for _ in range(5):
        trial = study.ask()
        for step in range(1, EPOCHS + 1):
            trial.report(0.5 + 0.04 * step, step)
        study.tell(trial, 0.9)
    return study


def _write_metrics(paths: RunPaths, accuracies: list[float]) -> None:
    rows = [{"epoch": i + 1, "train_loss": 1.0, "train_acc": 0.5, "val_loss": 1.0,
             "val_acc": acc, "drop_rate": 0.1, "lr": 1e-3, "seconds": 0.1,
             "images_per_s": 100} for i, acc in enumerate(accuracies)]
    paths.root.mkdir(parents=True, exist_ok=True)
    _io.write_csv(paths.metrics, rows, METRIC_FIELDS)


def _train(study: optuna.Study, tmp_path: Path, accuracy: float, offset: int = 0
           ) -> tuple[optuna.Trial, int]:
    """Feed a run's epochs to the progress callback as a run would; the epoch it stopped."""
    trial = study.ask()
    paths = RunPaths.of(tmp_path, f"setting{trial.number}", 0)
    advance = _pruning(trial, paths, offset, EPOCHS)
    advance(0)  # an executor's idle call: nothing new
    for epoch in range(1, EPOCHS + 1):
        _write_metrics(paths, [accuracy] * epoch)
        try:
            advance(1)
        except optuna.TrialPruned as pruned:
            assert f"after epoch {epoch} of setting{trial.number}/seed0" in str(pruned)
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            return trial, epoch
    study.tell(trial, accuracy)
    return trial, EPOCHS


def test_the_median_pruner_stops_a_clearly_worse_trial_after_its_warmup(tmp_path):
    study = _study("median")
    worse, stopped = _train(study, tmp_path, 0.2)
    assert stopped == EPOCHS // 2  # the first epoch after the warm-up
    frozen = study.trials[worse.number]
    assert frozen.state == optuna.trial.TrialState.PRUNED
    assert frozen.intermediate_values == {step: 0.2 for step in range(1, stopped + 1)}
    better, stopped = _train(study, tmp_path, 0.97)
    assert stopped == EPOCHS and study.trials[better.number].value == 0.97


def test_no_pruner_lets_every_trial_finish(tmp_path):
    _, stopped = _train(_study("none"), tmp_path, 0.2)
    assert stopped == EPOCHS


def test_the_second_seed_reports_after_the_first(tmp_path):
    study = optuna.create_study(direction="maximize")
    trial = study.ask()
    paths = RunPaths.of(tmp_path, "s", 1)
    _write_metrics(paths, [0.3, 0.4])
    advance = _pruning(trial, paths, offset=EPOCHS, epochs=EPOCHS)
    advance(2)  # a resumed run: both epochs at once
    advance(0)  # an idle call reports nothing new (Optuna would warn)
    assert study.trials[0].intermediate_values == {EPOCHS + 1: 0.3, EPOCHS + 2: 0.4}


def test_a_stopped_search_ends_its_trial_at_the_next_call(tmp_path):
    study = optuna.create_study(direction="maximize")
    stop = threading.Event()
    advance = _pruning(study.ask(), RunPaths.of(tmp_path, "s", 0), 0, EPOCHS, stop)
    advance(0)
    stop.set()
    with pytest.raises(KeyboardInterrupt, match="stopped while s/seed0 trained"):
        advance(0)


@pytest.mark.parametrize("values, name", [
    ({"p": 0.0734, "block_size": 4}, "dropblock_scheduled-p0.0734-b4"),
    ({"p": 0.3, "block_size": 1}, "dropblock_scheduled-p0.3-b1"),
])
def test_a_trial_setting_is_named_and_keyed_like_a_grid_point(values, name, tmp_path):
    tiny = {"data": "synthetic", "train_size": 24, "epochs": 1, "image_size": 16,
            "model_options": {"width": 4}}
    probe = lambda spec, method: 0.05  # noqa: E731 - the budget is not under test here
    sweep = build_sweep(overrides=tiny, sweep_overrides={"p": [0.05, 0.3], "block_size": [1, 5]},
                        probe=probe)
    search = Search(sweep, space_of(sweep.settings), SearchSettings(trials=1), tmp_path, probe)
    point, spec = trial_setting(search, values)
    assert point.name == name and spec.methods == [name]
    grid = build_sweep(overrides=tiny, sweep_overrides={"p": [values["p"]], "block_size": [
        values["block_size"]], "control": False}, probe=probe)
    assert grid.spec.run_key(name) == spec.run_key(name)  # the same run, wherever it ran


def test_an_interrupted_trial_queues_its_parameters_again(tmp_path):
    tiny = {"data": "synthetic", "train_size": 24, "epochs": 1, "image_size": 16,
            "model_options": {"width": 4}}
    sweep = build_sweep(overrides=tiny, sweep_overrides={"p": [0.05, 0.3], "block_size": [1, 5]},
                        probe=lambda spec, method: 0.05)

    def interrupted(spec, method):  # Ctrl-C arrives while the trial builds its setting
        raise KeyboardInterrupt

    search = Search(sweep, space_of(sweep.settings), SearchSettings(trials=1), tmp_path,
                    interrupted)
    study = optuna.create_study(direction="maximize",
                                sampler=optuna.samplers.RandomSampler(seed=0))
    with pytest.raises(KeyboardInterrupt):
        study.optimize(make_objective(search), n_trials=1)
    first, queued = study.trials
    assert first.state == optuna.trial.TrialState.FAIL
    assert queued.state == optuna.trial.TrialState.WAITING
    assert queued.user_attrs == {"retry_of": 0}
    again = study.ask()  # the next trial proposes the interrupted setting
    assert again.suggest_float("p", 0.05, 0.3, log=True) == first.params["p"]
    assert again.suggest_int("block_size", 1, 5) == first.params["block_size"]
