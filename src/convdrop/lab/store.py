"""What one run leaves on disk, and reading it back: the unit ``compare`` grids and ``train`` runs.

A run directory (``OUT/runs/<method>/seed<S>/``) holds ``metrics.csv`` (one row per
epoch), ``checkpoint.pt`` while the run is unfinished, ``result.json`` once it ends,
and, from ``convdrop train``, ``config.json`` (the resolved spec and world size). All
writes are atomic, so an interrupted run resumes from its last finished epoch, and a
finished one is skipped. ``result.json`` records the run's settings hash: a directory
that holds results of other settings is an error, never silently overwritten.

Below :mod:`convdrop.lab.trainer` (which writes metrics and checkpoints here) and
:mod:`convdrop.lab.run` (which trains a run with it).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from convdrop import _io
from convdrop.errors import RunFolderError
from convdrop.lab.spec import ExperimentSpec

METRIC_FIELDS = ["epoch", "train_loss", "train_acc", "val_loss", "val_acc", "drop_rate", "lr",
                 "seconds", "images_per_s"]

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


def check_unfinished(paths: RunPaths, *, resume: bool) -> None:
    """Refuse to start over an unfinished run (a checkpoint) unless ``resume`` is set."""
    if paths.checkpoint.is_file() and not resume:
        raise RunFolderError(f"{paths.root} holds an unfinished run "
                             f"({paths.checkpoint.name}); pass --resume to continue it, "
                             "or choose another --out")


def write_config(paths: RunPaths, spec: ExperimentSpec, method: str, seed: int, *,
                 world_size: int, sync_bn: bool) -> None:
    """``config.json`` of a ``convdrop train`` run: the resolved spec and how it ran."""
    _io.write_json(paths.config, {"method": method, "seed": seed, "world_size": world_size,
                                  "sync_bn": sync_bn, "spec": spec.model_dump()})


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
