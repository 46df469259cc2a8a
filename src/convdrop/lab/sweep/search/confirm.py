"""Confirmation: the search's best settings and the control, re-run on fresh seeds.

A search keeps the trial that scored highest, and on a noisy objective that trial is
partly its seed's luck: its score is biased upwards (the winner's curse). So the top K
settings (the best trial of each distinct setting) and the control run again over
:func:`~convdrop.lab.sweep.search.settings.confirmation_seeds`, which no trial trained,
through the grid runner (:func:`convdrop.lab.runs.runner.run_grid`: same run folders,
resume and ``--workers`` as a sweep), and the verdict is the sweep's statistics
(:func:`convdrop.lab.sweep.stats.analyse`: t-intervals, Welch, Holm, "within noise of the
best") over those runs only. :func:`analyse_confirmation` refuses any other run. The curse
is measured per setting: the search's estimate minus the confirmed mean.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from convdrop.lab.report.stats import summarize
from convdrop.lab.runs import runner
from convdrop.lab.runs.executors import Executor
from convdrop.lab.runs.run import check_run
from convdrop.lab.spec.experiment import ExperimentSpec
from convdrop.lab.sweep.expand import Point, Sweep
from convdrop.lab.sweep.search.objective import OPTIONS_ATTR, POINT_ATTR, SETTING_ATTR
from convdrop.lab.sweep.stats import Interval, SweepStats, analyse, t_interval

__all__ = ["Candidate", "Confirmation", "Curse", "analyse_confirmation", "candidates",
           "confirmation_sweep", "curses", "run_confirmation"]


@dataclass(frozen=True)
class Candidate:
    """A setting the search found, with the search's estimate of it."""

    point: Point
    options: dict[str, Any]  # its [methods.NAME] table
    trial: int  # the best trial of this setting
    search_val: float  # that trial's value: mean final validation accuracy, trial seeds
    search_test: float  # the same runs' test accuracy (NaN if unknown)


@dataclass(frozen=True)
class Curse:
    """How far the search's estimate of a setting was from its confirmed accuracy."""

    setting: str
    trial: int
    search_val: float
    confirmed_val: Interval
    search_test: float
    confirmed_test: Interval

    @property
    def val_gap(self) -> float:
        """Search estimate minus confirmed mean (validation): > 0 when it flattered."""
        return self.search_val - self.confirmed_val.mean

    @property
    def test_gap(self) -> float:
        return self.search_test - self.confirmed_test.mean


@dataclass(frozen=True)
class Confirmation:
    sweep: Sweep  # the control (when the sweep has one) and the candidates
    stats: SweepStats  # from the confirmation runs only
    results: list[dict]
    seeds: list[int]
    curses: list[Curse]  # one per candidate, in candidate order


def candidates(trials: Sequence[optuna.trial.FrozenTrial], k: int) -> list[Candidate]:
    """The best trial of each distinct setting among finished trials, best first (ties:
    the earlier trial), at most ``k``."""
    best: dict[str, optuna.trial.FrozenTrial] = {}
    for trial in trials:
        name = trial.user_attrs.get(SETTING_ATTR)
        if trial.state != TrialState.COMPLETE or name is None or trial.value is None \
                or math.isnan(trial.value):
            continue
        if name not in best or trial.value > best[name].value:
            best[name] = trial
    ranked = sorted(best.values(), key=lambda t: (-t.value, t.number))[:k]
    return [Candidate(Point(**t.user_attrs[POINT_ATTR]), dict(t.user_attrs[OPTIONS_ATTR]),
                      t.number, float(t.value), float(t.user_attrs.get("test_acc", math.nan)))
            for t in ranked]


def confirmation_sweep(sweep: Sweep, chosen: Sequence[Candidate]) -> Sweep:
    """A small sweep of the control (if ``sweep`` has one) and ``chosen``: its spec is
    ``sweep.spec`` with these methods, so every run key matches the trials'."""
    points: list[Point] = []
    tables: dict[str, dict[str, Any]] = {}
    if sweep.control is not None:
        points.append(sweep.control)
        tables["control"] = sweep.spec.options_for("control").model_dump(exclude_none=True)
    for candidate in chosen:
        points.append(candidate.point)
        tables[candidate.point.name] = candidate.options
    spec = ExperimentSpec.model_validate({**sweep.spec.model_dump(), "methods": list(tables),
                                          "method_options": tables})
    return Sweep(sweep.settings, tuple(points), spec)


def analyse_confirmation(sweep: Sweep, results: Sequence[Mapping[str, Any]],
                         seeds: Sequence[int]) -> SweepStats:
    """The sweep statistics of the confirmation runs; a run of any other seed (a trial's)
    is refused, so the search's own scores can never decide the verdict."""
    stray = sorted({(r.get("method"), r.get("seed")) for r in results
                    if r.get("seed") not in set(seeds)}, key=str)
    if stray:
        raise ValueError(f"confirmation results must use the confirmation seeds {list(seeds)};"
                         f" got runs {stray}")
    summaries = summarize(list(results), control="control")
    return analyse(summaries, control="control" if sweep.control is not None else None)


def _of(results: Sequence[Mapping[str, Any]], name: str, key: str) -> Interval:
    return t_interval([r[key] for r in results if r.get("method") == name
                       and r.get("status") == "ok"])


def curses(chosen: Sequence[Candidate], results: Sequence[Mapping[str, Any]]) -> list[Curse]:
    """Each candidate's search estimate beside its confirmed accuracy."""
    return [Curse(c.point.name, c.trial, c.search_val, _of(results, c.point.name, "val_acc"),
                  c.search_test, _of(results, c.point.name, "test_acc")) for c in chosen]


def run_confirmation(sweep: Sweep, chosen: Sequence[Candidate], out: Path,
                     seeds: Sequence[int], *, show_progress: bool = True,
                     executor: Executor | None = None) -> Confirmation:
    """Run (or resume) the confirmation in ``out`` on ``executor`` (default: as a grid
    would) and analyse it, with each setting's regime (the control's says whether there
    was anything to regularize). Every run already there is read back and checked before
    one trains."""
    confirming = confirmation_sweep(sweep, chosen)
    for method, seed in runner.grid(confirming.spec, seeds):
        check_run(confirming.spec, method, seed, out)
    results = runner.run_grid(confirming.spec, out, show_progress=show_progress, seeds=seeds,
                              executor=executor)
    stats = analyse_confirmation(confirming, results, seeds)
    stats = dataclasses.replace(stats, regimes=runner.regimes(
        out, summarize(results, control="control")))
    return Confirmation(confirming, stats, results, list(seeds), curses(chosen, results))
