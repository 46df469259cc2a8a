"""Training one run (a method and a seed) into its folder: what ``compare`` and ``train`` call.

:func:`execute` skips a finished run, resumes an interrupted one from its checkpoint
and otherwise builds a :class:`convdrop.lab.train.trainer.Trainer`; :func:`train_and_record`
fits it and writes ``result.json``. The files are those of :mod:`convdrop.lab.train.store`.
While it trains, the writing process holds the run folder's lock
(:mod:`convdrop.lab.runs.lock`), so no other runner trains the same run at the same time.
:func:`check_run` reads a run's files back without writing anything (the check a
runner makes for every run before it writes a file), and :func:`discard_run` is
``--restart``.
"""

from __future__ import annotations

import shutil
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from convdrop import _io
from convdrop.errors import LaunchError, OutputError
from convdrop.lab.runs import lock
from convdrop.lab.spec.experiment import ExperimentSpec
from convdrop.lab.train.checkpoint import read_checkpoint
from convdrop.lab.train.distributed import Dist, launch_env
from convdrop.lab.train.engine import NonFiniteLossError
from convdrop.lab.train.store import Progress, RunPaths, check_epochs, finished_result
from convdrop.lab.train.trainer import Trainer

__all__ = ["CACHE_FOLDER", "check_run", "discard_run", "execute", "train_and_record"]

CACHE_FOLDER = "cache"  # inside --out: a streamed folder's file index and statistics


def check_run(spec: ExperimentSpec, method: str, seed: int, out_dir: Path) -> None:
    """Read the run's result or checkpoint back and check them; writes nothing."""
    paths = RunPaths.of(out_dir, method, seed)
    if finished_result(paths, spec.run_key(method)) is None:
        read_checkpoint(paths, run_key=spec.run_key(method), seed=seed, epochs=spec.epochs)


def discard_run(out_dir: Path, method: str, seed: int) -> None:
    """Delete everything of one run (``--restart``), so it trains again from scratch."""
    paths = RunPaths.of(out_dir, method, seed)
    try:
        shutil.rmtree(paths.root)
    except FileNotFoundError:
        pass
    except OSError as err:
        raise OutputError(f"cannot delete {paths.root} for --restart: "
                          f"{err.strerror or err}") from err


def execute(
    spec: ExperimentSpec, method: str, seed: int, out_dir: Path, *,
    device: str | None = None, progress: Progress | None = None,
    dist: Dist | None = None, sync_bn: bool = False,
) -> dict[str, Any]:
    """Train one run to the end (resuming if a checkpoint exists) and return its result.

    ``dist`` (from :func:`convdrop.lab.train.distributed.setup`) makes it one process of a
    torchrun job: every rank calls this, rank 0 writes the files.
    """
    if dist is None and launch_env()[0] > 1:
        raise LaunchError(
            "this process is one of a torchrun job (WORLD_SIZE > 1), but no dist was given: "
            "every process would train the same run; use `convdrop train` under torchrun, "
            "and `convdrop compare --workers N` for parallel runs"
        )
    paths = RunPaths.of(out_dir, method, seed)
    writer = dist is None or dist.is_writer
    if writer:
        _make_folder(paths)
    held = lock.hold(paths.root, hint="let it finish") if writer else nullcontext()
    with held:
        done = finished_result(paths, spec.run_key(method))
        if done is not None:
            if progress:
                progress(spec.epochs, spec.epochs)
            return done
        started = time.perf_counter()
        trainer = Trainer.create(spec, method, seed, device=device or spec.device, dist=dist,
                                 sync_bn=sync_bn, cache_dir=out_dir / CACHE_FOLDER)
        return train_and_record(trainer, paths, progress=progress, started=started)


def _make_folder(paths: RunPaths) -> None:
    try:
        paths.root.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputError(f"cannot create {paths.root}: {err.strerror or err}") from err


def train_and_record(trainer: Trainer, paths: RunPaths, *, progress: Progress | None = None,
                     started: float | None = None) -> dict[str, Any]:
    """Fit ``trainer`` into ``paths`` and write ``result.json`` (rank 0); returns the result."""
    started = time.perf_counter() if started is None else started
    spec = trainer.spec
    base = {"method": trainer.method, "seed": trainer.seed,
            "run_key": spec.run_key(trainer.method), "epochs": spec.epochs,
            "world_size": trainer.world_size}
    try:
        rows = trainer.fit(paths, progress=progress)
    except NonFiniteLossError as err:  # record it; the other runs of a grid go on
        result = {**base, "status": "failed", "error": str(err)}
    else:
        check_epochs(paths, rows, spec.epochs, exact=True)  # never "ok" with epochs missing
        final = trainer.final_scores()
        result = {**base, "status": "ok", "error": None, **final,
                  "val_acc": rows[-1]["val_acc"] if rows else None}
    result["seconds"] = round(time.perf_counter() - started, 2)
    if trainer.is_writer:
        _io.write_json(paths.result, result)
        paths.checkpoint.unlink(missing_ok=True)
    return result
