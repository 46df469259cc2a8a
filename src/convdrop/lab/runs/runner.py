"""The experiment runner behind ``convdrop compare``: a grid of methods x seeds, and its report.

Runs execute where an executor puts them (:mod:`convdrop.lab.runs.executors`): in this
process, with ``--workers N`` in N spawned processes that die with the runner, or as
Ray tasks on a cluster; every executor calls the same
:func:`convdrop.lab.runs.run.execute`. Finished runs are skipped on a rerun, interrupted
ones resume from their last epoch. The runner holds ``--out``'s lock
(:mod:`convdrop.lab.runs.lock`) and, before it writes any file, reads back and checks
every run already there, so a refused rerun changes nothing. At the end it writes
``config.json``, ``results.json``, ``summary.csv``, the PNG plots and ``report.md``, which
opens with the regime of the control (:func:`regimes`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from convdrop import _io
from convdrop.errors import ArgumentError, OutputError
from convdrop.lab.runs import lock
from convdrop.lab.runs.executors import Executor, default_executor
from convdrop.lab.runs.run import check_run, discard_run
from convdrop.lab.runs.workers import sigterm_as_interrupt
from convdrop.lab.spec.experiment import ExperimentSpec
from convdrop.lab.train.store import RunPaths, prepare_out, read_metrics


def grid(spec: ExperimentSpec, seeds: Sequence[int] | None = None) -> list[tuple[str, int]]:
    """Every (method, seed) of the spec, methods outer; ``seeds`` replaces 0..seeds-1 (a
    search's confirmation runs fresh seeds, disjoint from its trials')."""
    chosen = range(spec.seeds) if seeds is None else seeds
    return [(method, seed) for method in spec.methods for seed in chosen]


def run_grid(spec: ExperimentSpec, out: Path, *, show_progress: bool = True,
             executor: Executor | None = None, seeds: Sequence[int] | None = None
             ) -> list[dict]:
    """Run (or resume) every run of the grid (``seeds``: see :func:`grid`) on ``executor``
    (default: the pool when ``spec.workers > 1``, else this process); returns their
    results in grid order."""
    from rich.progress import (  # rich on first use, so `convdrop --help` stays fast
        BarColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    runs = grid(spec, seeds)
    columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed:.0f}/"
               "{task.total:.0f} epochs"), TimeElapsedColumn(), TextColumn("ETA"),
               TimeRemainingColumn())
    with Progress(*columns, disable=not show_progress, transient=False) as bar:
        task = bar.add_task(f"{spec.name}: {len(runs)} runs", total=len(runs) * spec.epochs)
        return (executor or default_executor(spec)).run(
            spec, runs, out, advance=lambda epochs: bar.advance(task, epochs),
            show=lambda text: bar.update(task, description=f"{spec.name}: {text}"))


def write_outputs(spec: ExperimentSpec, out: Path, results: list[dict], *,
                  wall_seconds: float | None = None, executor: Executor | None = None
                  ) -> tuple[Path, list]:
    """results.json, summary.csv, plots and report.md; returns the report and summaries."""
    # not on top: scipy is slow for --help
    from convdrop.lab.report import plots
    from convdrop.lab.report import writer as report
    from convdrop.lab.runs import provenance

    _io.write_json(out / "results.json", results)
    summaries = report.summarize(results, control="control")
    report.write_summary_csv(out / "summary.csv", summaries)
    found = regimes(out, summaries)
    metrics = {
        method: [read_metrics(RunPaths.of(out, method, seed)) for seed in range(spec.seeds)]
        for method in spec.methods
    }
    figures = {
        "Learning curves": plots.learning_curves(metrics, out / "learning_curves.png"),
        "Test accuracy": plots.accuracy_bars(summaries, out / "accuracy.png"),
        "Generalization gap": plots.gap_bars(summaries, out / "gap.png"),
    }
    notes = [f"data: {spec.data}, model: {spec.model}, {spec.epochs} epochs, "
             f"{spec.seeds} seeds, train_size: {spec.train_size or 'all'}",
             *provenance.weights_notes(spec, results)]
    path = report.write_report(out, summaries, title=f"convdrop compare: {spec.name}",
                               config=spec.model_dump(), figures=figures, notes=notes,
                               run_info=provenance.run_info(spec, wall_seconds,
                                                            executor=executor, results=results),
                               settings=provenance.method_settings(spec), regimes=found)
    return path, summaries


def regimes(out: Path, summaries: Sequence[Any]) -> dict[str, Any]:
    """Each method's :class:`convdrop.lab.report.regime.Regime`, from the ``metrics.csv`` of
    its successful runs (the seeds its statistics count), in the summaries' order."""
    from convdrop.lab.report.regime import diagnose_all  # scipy, as above

    return diagnose_all({s.method: [read_metrics(RunPaths.of(out, s.method, seed))
                                    for seed in s.seeds] for s in summaries})


def restart_runs(spec: ExperimentSpec, restart: Sequence[str]) -> set[tuple[str, int]]:
    """The runs ``--restart`` names: ``METHOD/seedS`` one run, ``METHOD`` all its seeds."""
    runs = grid(spec)
    chosen: set[tuple[str, int]] = set()
    for name in restart:
        matched = {run for run in runs if name in (run[0], f"{run[0]}/seed{run[1]}")}
        if not matched:
            raise ArgumentError(f"--restart {name!r}: not a run of this comparison; expected "
                                f"METHOD/seedS or METHOD, e.g. {runs[0][0]}/seed{runs[0][1]}")
        chosen |= matched
    return chosen


def compare(spec: ExperimentSpec, out: Path, *, show_progress: bool = True,
            restart: Sequence[str] = (), executor: Executor | None = None,
            announce: Callable[[], None] | None = None
            ) -> tuple[Path, list]:
    """Run the grid and write every output; returns the report's path and the summaries.

    Every run already in ``out`` is checked before anything is written; ``restart``
    names runs (``METHOD/seedS`` or ``METHOD``) to delete and train again instead.
    ``executor`` runs them (:func:`convdrop.lab.runs.executors.open_executor`; default:
    the pool when ``spec.workers > 1``, else this process).
    ``announce()`` (the command's header line) runs once ``out``'s lock is held and those
    checks passed, so a refused run prints nothing but its error.
    A write that fails (disk full, read-only) is an :class:`OutputError` naming ``--out``.
    """
    fresh = restart_runs(spec, restart)
    out = prepare_out(out)
    try:
        with sigterm_as_interrupt(), lock.hold(out):
            for method, seed in grid(spec):
                if (method, seed) not in fresh:
                    check_run(spec, method, seed, out)
            if announce is not None:
                announce()
            for method, seed in sorted(fresh):
                discard_run(out, method, seed)
            _io.write_json(out / "config.json", spec.model_dump())
            started = time.perf_counter()
            executor = executor or default_executor(spec)
            results = run_grid(spec, out, show_progress=show_progress, executor=executor)
            return write_outputs(spec, out, results, executor=executor,
                                 wall_seconds=time.perf_counter() - started)
    except OutputError as err:
        raise OutputError(f"--out {out}: {err}") from err
