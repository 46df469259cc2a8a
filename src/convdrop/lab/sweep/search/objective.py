"""One trial: Optuna's proposal made a sweep setting and trained by the ordinary run.

The proposal becomes a one-point ``[sweep]`` table, expanded exactly as a grid point is
(:func:`convdrop.lab.sweep.expand.expand`: its name, ``[methods.NAME]`` table and
measured drop budget), and each of the trial seeds trains on the search's executor
(this process, the worker pool or Ray: :mod:`convdrop.lab.runs.executors`, which all call
:func:`convdrop.lab.runs.run.execute`) into ``OUT/runs/<setting>/seed<k>/``, so a trial's
runs have the run keys, checks and resume of every other run. After every epoch the run's
validation accuracy (from its ``metrics.csv``, which every executor's runs write into
``--out``) is reported to Optuna at step ``seed index x epochs + epoch``, and the pruner
may stop it there; the stopped run keeps its checkpoint. The trial's value is the mean
final validation accuracy over its seeds: the test split stays out of the choice, and a
run that diverged fails the trial.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import optuna

from convdrop.errors import RunFolderError
from convdrop.lab.runs.executors import Executor, LocalExecutor
from convdrop.lab.spec.experiment import ExperimentSpec
from convdrop.lab.sweep.expand import Point, Probe, Sweep, budget_probe, expand
from convdrop.lab.sweep.search.retry import claim, requeue
from convdrop.lab.sweep.search.settings import SearchSettings, trial_seeds
from convdrop.lab.sweep.search.space import Space, suggest, trial_table
from convdrop.lab.train.store import RunPaths, read_metrics

__all__ = ["OPTIONS_ATTR", "POINT_ATTR", "SETTING_ATTR", "Search", "make_objective",
           "trial_setting"]

SETTING_ATTR, POINT_ATTR, OPTIONS_ATTR = "setting", "point", "options"


@dataclass(frozen=True)
class Search:
    """What every trial needs: the expanded sweep (its table, control and base spec), the
    space, the search's settings, the output folder, the executor its runs train on, and
    the event that stops the trials running side by side (set on Ctrl-C)."""

    sweep: Sweep
    space: Space
    settings: SearchSettings
    out: Path
    probe: Probe = budget_probe
    executor: Executor = field(default_factory=LocalExecutor)
    stop: threading.Event = field(default_factory=threading.Event)


def trial_setting(search: Search, values: dict[str, Any]) -> tuple[Point, ExperimentSpec]:
    """The sweep point of a proposal and the spec that runs it (its only method; without
    the control, so ``require_overfit``, judged on the confirmation, is off here)."""
    base = search.sweep.spec.model_copy(update={"require_overfit": False})
    one = expand(trial_table(search.sweep.settings, values), base, search.probe)
    return one.points[0], one.spec


def _pruning(trial: optuna.Trial, paths: RunPaths, offset: int, epochs: int,
             stop: threading.Event | None = None) -> Callable[[int], None]:
    """A run's ``advance(epochs since the last call)`` for an executor: it reports each
    new epoch's validation accuracy at step ``offset + epoch`` and raises ``TrialPruned``
    when the pruner says so, or ``KeyboardInterrupt`` once ``stop`` is set."""
    reported: set[int] = set()
    done = 0

    def advance(epochs_since: int) -> None:
        nonlocal done
        if stop is not None and stop.is_set():
            raise KeyboardInterrupt(f"the search was stopped while {paths.run} trained")
        if epochs_since <= 0:
            return
        done += epochs_since
        rows = read_metrics(paths)[:done]
        for epoch, row in enumerate(rows, start=1):
            if offset + epoch not in reported:
                trial.report(row["val_acc"], offset + epoch)
                reported.add(offset + epoch)
        if 0 < done < epochs and trial.should_prune():
            accuracy = rows[-1]["val_acc"] if rows else float("nan")
            raise optuna.TrialPruned(f"validation accuracy {accuracy:.4f} after epoch {done} "
                                     f"of {paths.run}")

    return advance


def _run_trial(search: Search, trial: optuna.Trial) -> float:
    point, spec = trial_setting(search, suggest(trial, search.space))
    trial.set_user_attr(SETTING_ATTR, point.name)
    trial.set_user_attr(POINT_ATTR, asdict(point))
    trial.set_user_attr(OPTIONS_ATTR, spec.options_for(point.name).model_dump(
        exclude_none=True))
    results = []
    for index, seed in enumerate(trial_seeds(search.settings)):  # in turn: steps add up
        paths = RunPaths.of(search.out, point.name, seed)
        advance = _pruning(trial, paths, index * spec.epochs, spec.epochs, search.stop)
        results += search.executor.run(spec, [(point.name, seed)], search.out,
                                       advance=advance, show=lambda text: None)
    failed = [r for r in results if r["status"] != "ok"]
    if failed:  # a diverged run: the trial fails (NaN), the search goes on
        trial.set_user_attr("error", f"seed {failed[0]['seed']}: {failed[0]['error']}")
        return math.nan
    trial.set_user_attr("test_acc", float(np.mean([r["test_acc"] for r in results])))
    trial.set_user_attr("train_acc", float(np.mean([r["train_acc"] for r in results])))
    return float(np.mean([r["val_acc"] for r in results]))


def make_objective(search: Search) -> Callable[[optuna.Trial], float]:
    """Optuna's objective: train the proposed setting, return its validation accuracy.

    An interrupted trial queues its parameters again before the interrupt goes on
    (:func:`convdrop.lab.sweep.search.retry.requeue`); a run folder in use by another
    process (two processes proposed one setting) fails only this trial.
    """

    def objective(trial: optuna.Trial) -> float:
        claim(trial)
        try:
            return _run_trial(search, trial)
        except KeyboardInterrupt:
            requeue(trial.study, trial.number, trial.params)
            raise
        except RunFolderError as err:
            trial.set_user_attr("error", str(err))
            raise

    return objective
