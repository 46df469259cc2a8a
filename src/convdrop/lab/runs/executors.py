"""Where the runs of a grid execute: in this process, in a pool of processes, or on Ray.

``compare`` and ``sweep`` hand their (method, seed) runs to one executor; every executor
calls the same :func:`convdrop.lab.runs.run.execute`, so run keys, resume, checks, locks
and results do not depend on where a run ran (DESIGN.md section 6):

* ``local``: one run at a time in this process (the default);
* ``pool``: ``--workers N`` processes on this machine (:mod:`convdrop.lab.runs.workers`),
  one GPU each, round-robin, when several are present (the default when ``--workers > 1``);
* ``ray``: one Ray task per run on a local Ray or a cluster
  (:mod:`convdrop.lab.runs.ray_executor`), which needs the ``ray`` extra.

:class:`ExecutorSettings` holds the flags; :func:`open_executor` checks them against the
spec (one line naming the flag) and yields the executor, starting and stopping a local
Ray around the block when one is needed.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal, Protocol

import torch
from pydantic import BaseModel, ConfigDict, Field

from convdrop.errors import ArgumentError, one_line_warnings
from convdrop.lab.runs import ray_executor
from convdrop.lab.runs.run import execute
from convdrop.lab.runs.workers import run_jobs
from convdrop.lab.spec.experiment import ExperimentSpec

__all__ = ["EXECUTOR_FIELDS", "Executor", "ExecutorSettings", "LocalExecutor",
           "PoolExecutor", "chosen", "open_executor", "worker_threads"]

EXECUTOR_FIELDS = ("executor", "ray_address", "cpus_per_run", "gpus_per_run")
RAY_ONLY = ("ray_address", "cpus_per_run", "gpus_per_run")


class ExecutorSettings(BaseModel):
    """Where runs execute; the flags ``--executor``, ``--ray-address``, ``--cpus-per-run``
    and ``--gpus-per-run`` are built from these fields. None of them is part of a run's
    key: a run may start on one executor and resume on another."""

    model_config = ConfigDict(extra="forbid")

    executor: Literal["local", "pool", "ray"] | None = Field(
        None, description="where runs execute: local (one at a time in this process), pool "
        "(--workers processes on this machine) or ray (one task per run on a Ray cluster); "
        "none = pool when --workers > 1, else local")
    ray_address: str | None = Field(
        None, description="the Ray cluster to join (HOST:PORT, or auto for the one started "
        "on this machine with `ray start`); none = start a local Ray on 127.0.0.1 and stop "
        "it at the end")
    cpus_per_run: float | None = Field(
        None, gt=0, description="CPUs Ray reserves for each run, which also sets its torch "
        "threads (the whole part, at least 1); none = 1")
    gpus_per_run: float | None = Field(
        None, ge=0, le=1, description="GPUs Ray reserves for each run; a fraction shares one "
        "(0.25: four runs per GPU); none = 1 when the cluster has GPUs and --device is auto "
        "or cuda, else 0")


Advance = Callable[[int], None]  # epochs finished since the last call
Show = Callable[[str], None]  # what the progress bar says


class Executor(Protocol):
    """Runs (method, seed) pairs of a spec into ``out`` and returns their results in order."""

    name: str
    threads: int | None  # torch threads of each run; None: this process's
    slots: int  # runs it executes at once

    def describe(self) -> str:
        """One line for the console and the report: where runs execute."""

    def run(self, spec: ExperimentSpec, runs: list[tuple[str, int]], out: Path, *,
            advance: Advance, show: Show) -> list[dict[str, Any]]:
        """Execute every run (resuming, skipping finished ones); results in ``runs`` order.

        ``advance`` gets the epochs finished since its last call; the pool and Ray also
        call it with 0 while they wait on other processes. An error it raises (a pruned
        trial, a stop) ends the runs still going, which keep their last checkpoint, and goes
        on up. Several threads may call ``run`` at once (a search's trials side by side, up
        to ``slots``)."""


class LocalExecutor:
    """One run at a time in this process."""

    name, threads, slots = "local", None, 1

    def describe(self) -> str:
        return f"local: one run at a time in this process ({torch.get_num_threads()} torch " \
               "thread(s))"

    def run(self, spec: ExperimentSpec, runs: list[tuple[str, int]], out: Path, *,
            advance: Advance, show: Show) -> list[dict[str, Any]]:
        results = []
        for method, seed in runs:
            show(f"{method} seed {seed}")
            results.append(execute(spec, method, seed, out, device=spec.device,
                                   progress=_deltas(advance)))
        return results


def _deltas(advance: Callable[[int], None]) -> Callable[[int, int], None]:
    """A run's ``progress(done, total)`` as the epochs since its last call."""
    last = [0]

    def progress(done: int, total: int) -> None:
        advance(done - last[0])
        last[0] = done

    return progress


def worker_threads(workers: int) -> int:
    """Torch threads of each of ``workers`` processes on this machine: its share of the
    cores (``workers`` is in every run key for this reason: it changes the float sums)."""
    return max(1, (os.cpu_count() or 1) // workers)


def _device_for(spec: ExperimentSpec, index: int) -> str:
    """Spread workers over GPUs when several are present and the device allows it."""
    if spec.workers > 1 and spec.device in ("auto", "cuda") and torch.cuda.device_count() > 1:
        return f"cuda:{index % torch.cuda.device_count()}"
    return spec.device


def _execute_reporting(spec_json: str, method: str, seed: int, out: str, device: str, *,
                       report: Callable[[int], None]) -> dict[str, Any]:
    """Pool worker entry point: a run whose per-epoch progress goes to ``report``."""
    spec = ExperimentSpec.model_validate_json(spec_json)
    with one_line_warnings():  # as the command line shows its own: one line each
        return execute(spec, method, seed, Path(out), device=device, progress=_deltas(report))


class PoolExecutor:
    """``spec.workers`` spawned processes on this machine, each with its share of the cores."""

    name = "pool"

    def __init__(self, workers: int) -> None:
        self.workers = self.slots = workers
        self.threads = worker_threads(workers)

    def describe(self) -> str:
        return f"pool: {self.workers} worker process(es) on this machine, {self.threads} " \
               "torch thread(s) each"

    def run(self, spec: ExperimentSpec, runs: list[tuple[str, int]], out: Path, *,
            advance: Advance, show: Show) -> list[dict[str, Any]]:
        jobs = [(spec.model_dump_json(), method, seed, str(out), _device_for(spec, i))
                for i, (method, seed) in enumerate(runs)]
        return run_jobs(_execute_reporting, jobs, processes=min(spec.workers, len(runs)),
                        threads=self.threads, on_event=advance, idle=lambda: advance(0),
                        describe=lambda i: f"run {runs[i][0]} seed {runs[i][1]}")


def chosen(settings: ExecutorSettings, spec: ExperimentSpec, *,
           workers_flag: int | None = None) -> str:
    """The executor the settings name (or the default), checked against the spec.

    ``workers_flag``: ``--workers`` when given on the command line. Ray sizes its runs
    by resources, so ``--workers`` there is an error; a ``workers`` from the layers
    beneath (2 on the bundled data) stays in the run key only, so a run of the pool
    resumes on Ray with the same thread count (one per run on two cores).
    """
    name = settings.executor or ("pool" if spec.workers > 1 else "local")
    if name != "ray":
        for field in RAY_ONLY:
            if getattr(settings, field) is not None:
                flag = "--" + field.replace("_", "-")
                raise ArgumentError(f"{flag} {getattr(settings, field)}: only --executor ray "
                                    f"takes it (the executor is {name})")
    if name == "local" and spec.workers > 1:
        raise ArgumentError(f"--workers {spec.workers}: --executor local runs one run at a "
                            "time; use --executor pool, or --workers 1")
    if name == "ray" and workers_flag is not None:
        raise ArgumentError(f"--workers {workers_flag}: sizes the pool executor; on "
                            "--executor ray, Ray runs as many runs at once as --cpus-per-run "
                            "and --gpus-per-run fit on the cluster")
    if name == "ray":
        ray_executor.check_extra()
    return name


@contextmanager
def open_executor(settings: ExecutorSettings, spec: ExperimentSpec) -> Iterator[Executor]:
    """The executor for ``spec`` (a local Ray runs for the block's duration when needed)."""
    name = chosen(settings, spec)
    if name == "local":
        yield LocalExecutor()
    elif name == "pool":
        yield PoolExecutor(spec.workers)
    else:
        with ray_executor.connect(settings.ray_address, spec, cpus_per_run=settings.cpus_per_run,
                                  gpus_per_run=settings.gpus_per_run) as executor:
            yield executor


def default_executor(spec: ExperimentSpec) -> Executor:
    """The executor of a spec without flags: the pool when ``workers > 1``, else local."""
    return PoolExecutor(spec.workers) if spec.workers > 1 else LocalExecutor()
