"""The experiment runner behind ``convdrop compare``: a grid of methods x seeds, and its report.

Runs execute in this process or, with ``--workers N``, in N spawned processes
(one GPU each, round-robin, when several are present) that die with the runner
(:mod:`convdrop.lab.runs.workers`). Finished runs are skipped on a rerun, interrupted
ones resume from their last epoch. The runner holds ``--out``'s lock
(:mod:`convdrop.lab.runs.lock`) and, before it writes any file, reads back and checks
every run already there, so a refused rerun changes nothing. At the end it writes
``config.json``, ``results.json``, ``summary.csv``, the PNG plots and ``report.md``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from convdrop import _io
from convdrop.errors import ArgumentError, OutputError
from convdrop.lab.runs import lock
from convdrop.lab.runs.run import check_run, discard_run, execute
from convdrop.lab.runs.workers import run_jobs, sigterm_as_interrupt
from convdrop.lab.spec.experiment import ExperimentSpec
from convdrop.lab.train.run_data import run_threads
from convdrop.lab.train.store import RunPaths, prepare_out, read_metrics


def grid(spec: ExperimentSpec) -> list[tuple[str, int]]:
    """Every (method, seed) of the spec, methods outer."""
    return [(method, seed) for method in spec.methods for seed in range(spec.seeds)]


def _device_for(spec: ExperimentSpec, index: int) -> str:
    """Spread workers over GPUs when several are present and the device allows it."""
    if spec.workers > 1 and spec.device in ("auto", "cuda") and torch.cuda.device_count() > 1:
        return f"cuda:{index % torch.cuda.device_count()}"
    return spec.device


def _execute_reporting(spec_json: str, method: str, seed: int, out: str, device: str, *,
                       report: Callable[[int], None]) -> dict[str, Any]:
    """Worker entry point: a run whose per-epoch progress goes to ``report``."""
    spec = ExperimentSpec.model_validate_json(spec_json)
    last = [0]

    def progress(done: int, total: int) -> None:
        report(done - last[0])
        last[0] = done

    return execute(spec, method, seed, Path(out), device=device, progress=progress)


def run_grid(spec: ExperimentSpec, out: Path, *, show_progress: bool = True) -> list[dict]:
    """Run (or resume) every run of the grid; returns their results in grid order."""
    from rich.progress import (  # rich on first use, so `convdrop --help` stays fast
        BarColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    runs = grid(spec)
    columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed:.0f}/"
               "{task.total:.0f} epochs"), TimeElapsedColumn(), TextColumn("ETA"),
               TimeRemainingColumn())
    with Progress(*columns, disable=not show_progress, transient=False) as bar:
        task = bar.add_task(f"{spec.name}: {len(runs)} runs", total=len(runs) * spec.epochs)
        if spec.workers == 1:
            return [_run_here(spec, method, seed, out, bar, task) for method, seed in runs]
        return _run_pool(spec, runs, out, bar, task)


def _run_here(spec: ExperimentSpec, method: str, seed: int, out: Path, bar: Any,
              task: Any) -> dict:
    last = [0]

    def progress(done: int, total: int) -> None:
        bar.advance(task, done - last[0])
        last[0] = done

    bar.update(task, description=f"{spec.name}: {method} seed {seed}")
    return execute(spec, method, seed, out, device=spec.device, progress=progress)


def _run_pool(spec: ExperimentSpec, runs: list[tuple[str, int]], out: Path, bar: Any,
              task: Any) -> list[dict]:
    threads = run_threads(spec)
    jobs = [(spec.model_dump_json(), method, seed, str(out), _device_for(spec, i))
            for i, (method, seed) in enumerate(runs)]
    return run_jobs(_execute_reporting, jobs, processes=spec.workers, threads=threads,
                    on_event=lambda epochs: bar.advance(task, epochs),
                    describe=lambda i: f"run {runs[i][0]} seed {runs[i][1]}")


def write_outputs(spec: ExperimentSpec, out: Path, results: list[dict], *,
                  wall_seconds: float | None = None) -> tuple[Path, list]:
    """results.json, summary.csv, plots and report.md; returns the report and summaries."""
    # not on top: scipy is slow for --help
    from convdrop.lab.report import plots
    from convdrop.lab.report import writer as report
    from convdrop.lab.runs import provenance

    _io.write_json(out / "results.json", results)
    summaries = report.summarize(results, control="control")
    report.write_summary_csv(out / "summary.csv", summaries)
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
             f"{spec.seeds} seeds, train_size: {spec.train_size or 'all'}"]
    path = report.write_report(out, summaries, title=f"convdrop compare: {spec.name}",
                               config=spec.model_dump(), figures=figures, notes=notes,
                               run_info=provenance.run_info(spec, wall_seconds),
                               settings=provenance.method_settings(spec))
    return path, summaries


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
            restart: Sequence[str] = (), announce: Callable[[], None] | None = None
            ) -> tuple[Path, list]:
    """Run the grid and write every output; returns the report's path and the summaries.

    Every run already in ``out`` is checked before anything is written; ``restart``
    names runs (``METHOD/seedS`` or ``METHOD``) to delete and train again instead.
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
            results = run_grid(spec, out, show_progress=show_progress)
            return write_outputs(spec, out, results,
                                 wall_seconds=time.perf_counter() - started)
    except OutputError as err:
        raise OutputError(f"--out {out}: {err}") from err
