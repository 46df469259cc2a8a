"""One training run (a method and a seed): the unit that ``compare`` grids and ``train`` runs.

A run directory (``OUT/runs/<method>/seed<S>/``) holds ``metrics.csv`` (one row per
epoch), ``checkpoint.pt`` while the run is unfinished, ``result.json`` once it ends,
and, from ``convdrop train``, ``config.json`` (the resolved spec and world size). All
writes are atomic, so an interrupted run resumes from its last finished epoch, and a
finished one is skipped. ``result.json`` records the run's settings hash: a directory
that holds results of other settings is an error, never silently overwritten.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from convdrop import _io
from convdrop.errors import LaunchError, RunFolderError
from convdrop.lab.engine import NonFiniteLossError
from convdrop.lab.spec import ExperimentSpec

if TYPE_CHECKING:
    from convdrop.lab.data import Datasets
    from convdrop.lab.distributed import Dist
    from convdrop.lab.trainer import Trainer

METRIC_FIELDS = ["epoch", "train_loss", "train_acc", "val_loss", "val_acc", "drop_rate", "lr",
                 "seconds"]

Progress = Callable[[int, int], None]  # (epochs done, epochs in total)


@dataclass(frozen=True)
class RunPaths:
    """Files of one run."""

    root: Path

    @staticmethod
    def of(out_dir: Path, method: str, seed: int) -> RunPaths:
        return RunPaths(Path(out_dir) / "runs" / method / f"seed{seed}")

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.csv"

    @property
    def result(self) -> Path:
        return self.root / "result.json"

    @property
    def checkpoint(self) -> Path:
        return self.root / "checkpoint.pt"

    @property
    def config(self) -> Path:
        return self.root / "config.json"


def finished_result(paths: RunPaths, run_key: str) -> dict[str, Any] | None:
    """The stored result if this run already finished with the same settings."""
    if not paths.result.is_file():
        return None
    result = json.loads(paths.result.read_text(encoding="utf-8"))
    if result.get("run_key") != run_key:
        raise RunFolderError(
            f"{paths.root} holds a run with other settings (run_key {result.get('run_key')} "
            f"!= {run_key}); choose another --out, or delete that folder to rerun it"
        )
    return result


@functools.lru_cache(maxsize=4)
def _datasets(data: str, train_size: int | None, seed: int) -> Datasets:
    from convdrop.lab.data import load_dataset, normalize

    return normalize(load_dataset(data, train_size=train_size, seed=seed))


def load_run_data(spec: ExperimentSpec, seed: int) -> Datasets:
    """Normalized splits; seed k draws training subset k (the same for every method)."""
    return _datasets(spec.data, spec.train_size, seed if spec.train_size else 0)


def execute(
    spec: ExperimentSpec, method: str, seed: int, out_dir: Path, *,
    device: str | None = None, progress: Progress | None = None,
    dist: Dist | None = None, sync_bn: bool = False,
) -> dict[str, Any]:
    """Train one run to the end (resuming if a checkpoint exists) and return its result.

    ``dist`` (from :func:`convdrop.lab.distributed.setup`) makes it one process of a
    torchrun job: every rank calls this, rank 0 writes the files.
    """
    from convdrop.lab.distributed import launch_env
    from convdrop.lab.trainer import Trainer

    if dist is None and launch_env()[0] > 1:
        raise LaunchError(
            "this process is one of a torchrun job (WORLD_SIZE > 1), but no dist was given: "
            "every process would train the same run; use `convdrop train` under torchrun, "
            "and `convdrop compare --workers N` for parallel runs"
        )
    paths = RunPaths.of(out_dir, method, seed)
    done = finished_result(paths, spec.run_key(method))
    if done is not None:
        if progress:
            progress(spec.epochs, spec.epochs)
        return done
    started = time.perf_counter()
    trainer = Trainer.create(spec, method, seed, device=device or spec.device, dist=dist,
                             sync_bn=sync_bn)
    return train_and_record(trainer, paths, progress=progress, started=started)


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
        final = trainer.final_scores()
        result = {**base, "status": "ok", "error": None, **final,
                  "val_acc": rows[-1]["val_acc"] if rows else None}
    result["seconds"] = round(time.perf_counter() - started, 2)
    if trainer.is_writer:
        _io.write_json(paths.result, result)
        paths.checkpoint.unlink(missing_ok=True)
    return result


def read_metrics(paths: RunPaths) -> list[dict[str, float]]:
    """Per-epoch rows of a run as floats (empty if it has none yet)."""
    if not paths.metrics.is_file():
        return []
    return [{k: float(v) for k, v in row.items() if v != ""} for row in _io.read_csv(paths.metrics)]


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Atomic ``torch.save``."""
    _io.atomic_write(path, lambda handle: torch.save(state, handle))


def load_checkpoint(path: Path) -> dict[str, Any] | None:
    """The checkpoint's state, loaded safely (``weights_only=True``), or None."""
    if not path.is_file():
        return None
    return torch.load(path, map_location="cpu", weights_only=True)
