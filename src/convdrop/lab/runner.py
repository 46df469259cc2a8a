"""The experiment runner behind ``convdrop compare``: a grid of methods x seeds, and its report.

Runs execute in this process or, with ``--workers N``, in N spawned processes
(one GPU each, round-robin, when several are present). Finished runs are skipped
on a rerun, interrupted ones resume from their last epoch. At the end it writes
``config.json``, ``results.json``, ``summary.csv``, the PNG plots and ``report.md``.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import time
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from typing import Any

import torch

from convdrop import _io
from convdrop.lab.run import execute
from convdrop.lab.spec import ExperimentSpec
from convdrop.lab.store import RunPaths, read_metrics


def grid(spec: ExperimentSpec) -> list[tuple[str, int]]:
    """Every (method, seed) of the spec, methods outer."""
    return [(method, seed) for method in spec.methods for seed in range(spec.seeds)]


def _worker_init(threads: int) -> None:
    torch.set_num_threads(threads)


def _device_for(spec: ExperimentSpec, index: int) -> str:
    """Spread workers over GPUs when several are present and the device allows it."""
    if spec.workers > 1 and spec.device in ("auto", "cuda") and torch.cuda.device_count() > 1:
        return f"cuda:{index % torch.cuda.device_count()}"
    return spec.device


def _execute_reporting(spec_json: str, method: str, seed: int, out: str, device: str,
                       events: Any) -> dict[str, Any]:
    """Worker entry point: a run whose per-epoch progress goes to ``events``."""
    spec = ExperimentSpec.model_validate_json(spec_json)
    last = [0]

    def progress(done: int, total: int) -> None:
        events.put(done - last[0])
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
    context = multiprocessing.get_context("spawn")
    threads = max(1, (os.cpu_count() or 1) // spec.workers)
    with context.Manager() as manager, ProcessPoolExecutor(
        spec.workers, mp_context=context, initializer=_worker_init, initargs=(threads,)
    ) as pool:
        events = manager.Queue()
        futures: list[Future] = [
            pool.submit(_execute_reporting, spec.model_dump_json(), method, seed, str(out),
                        _device_for(spec, i), events)
            for i, (method, seed) in enumerate(runs)
        ]
        while not all(f.done() for f in futures):
            try:
                bar.advance(task, events.get(timeout=0.2))
            except queue.Empty:
                pass
        while not events.empty():
            bar.advance(task, events.get())
        return [f.result() for f in futures]


def write_outputs(spec: ExperimentSpec, out: Path, results: list[dict], *,
                  wall_seconds: float | None = None) -> tuple[Path, list]:
    """results.json, summary.csv, plots and report.md; returns the report and summaries."""
    from convdrop.lab import plots, provenance, report  # not on top: scipy is slow for --help

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


def compare(spec: ExperimentSpec, out: Path, *,
            show_progress: bool = True) -> tuple[Path, list]:
    """Run the grid and write every output; returns the report's path and the summaries."""
    out.mkdir(parents=True, exist_ok=True)
    _io.write_json(out / "config.json", spec.model_dump())
    started = time.perf_counter()
    results = run_grid(spec, out, show_progress=show_progress)
    return write_outputs(spec, out, results, wall_seconds=time.perf_counter() - started)
