"""What one run leaves on disk, and reading it back: the unit ``compare`` grids and ``train`` runs.

A run directory (``OUT/runs/<method>/seed<S>/``) holds ``metrics.csv`` (one row per
epoch), ``checkpoint.pt`` while the run is unfinished, ``result.json`` once it ends,
and, from ``convdrop train``, ``config.json`` (the resolved spec and world size). All
writes are atomic, so an interrupted run resumes from its last finished epoch, and a
finished one is skipped. ``result.json`` records the run's settings hash: a directory
that holds results of other settings is an error, never silently overwritten.

Every file is checked when it is read back (:mod:`convdrop.lab.train.checkpoint` for the
checkpoint): a corrupt, truncated or inconsistent file is one
:class:`convdrop.errors.RunFolderError` naming it and what to do, and a run whose
``metrics.csv`` lacks epochs is never reported finished.

Below :mod:`convdrop.lab.train.trainer` (which writes metrics and checkpoints here) and
:mod:`convdrop.lab.runs.run` (which trains a run with it).
"""

from __future__ import annotations

import csv
import io
import json
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from convdrop import _io
from convdrop.errors import OutputError, RunFolderError
from convdrop.lab.spec.experiment import ExperimentSpec, check_name
from convdrop.lab.train.result import CHECKSUM, result_problem

# train_acc is the running mean over the epoch, with augmentation and the regularizer on;
# train_eval_acc scores up to 5,000 training images in eval mode after it (the regime's gap)
METRIC_FIELDS = ["epoch", "train_loss", "train_acc", "train_eval_acc", "val_loss", "val_acc",
                 "drop_rate", "lr", "seconds", "images_per_s"]
RESULT_KEYS = ("method", "seed", "run_key", "epochs", "status")

Progress = Callable[[int, int], None]  # (epochs done, epochs in total)


@dataclass(frozen=True)
class RunPaths:
    """Files of one run; ``run`` ("METHOD/seedS") names it in messages and ``--restart``."""

    root: Path
    run: str = ""

    @staticmethod
    def of(out_dir: Path, method: str, seed: int) -> RunPaths:
        """The run's folder under ``out_dir``; refuses a name that would lead outside it."""
        check_name(method, "methods")
        out = Path(out_dir)
        root = out / "runs" / method / f"seed{int(seed)}"
        try:
            inside = root.resolve().is_relative_to(out.resolve())
        except (RuntimeError, OSError):  # a loop of symbolic links, a name too long
            of_out = _io.unusable(out)  # --out itself, else the run folder below it
            where = "" if of_out else f"{root}: "
            problem = of_out or _io.unusable(root) or "a loop of symbolic links"
            raise OutputError(f"--out {out}: {where}cannot use that path ({problem}); choose "
                              "another --out") from None
        if not inside:  # e.g. a symlink in the way
            raise RunFolderError(f"the run folder {root} resolves to {root.resolve()}, "
                                 f"outside --out {out}; remove the link or choose another --out")
        return RunPaths(root, f"{method}/seed{int(seed)}")

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

    def remedy(self) -> str:
        """What to do about a broken file of this run."""
        restart = f" or pass --restart {self.run}" if self.run else ""
        return f"delete {self.root}{restart} to train this run again from scratch"

    def broken(self, path: Path, problem: str) -> RunFolderError:
        """The one-line error for a broken ``path`` of this run."""
        return RunFolderError(f"{path}: {problem}; {self.remedy()}")


def prepare_out(out: Path) -> Path:
    """Create the output folder (and missing parents) and check it takes files.

    Every problem (a file there or on the way, read-only, no space) is an
    :class:`OutputError` naming ``--out``.
    """
    out = Path(out)
    problem = _io.unusable(out)
    if problem:
        raise OutputError(f"--out {out}: cannot use that path ({problem}); choose another --out")
    if out.exists() and not out.is_dir():
        raise OutputError(f"--out {out}: is a file, not a folder; choose another --out")
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out, prefix=".convdrop-probe."):
            pass
    except (FileExistsError, NotADirectoryError):
        raise OutputError(f"--out {out}: a part of that path is a file, not a folder; "
                          "choose another --out") from None
    except OSError as err:
        raise OutputError(f"--out {out}: cannot write there ({err.strerror or err}); "
                          "choose another --out") from None
    return out


def finished_result(paths: RunPaths, run_key: str, *, method: str, seed: int,
                    epochs: int) -> dict[str, Any] | None:
    """The stored result if this run (``method``, ``seed``, ``epochs``) already finished
    with the same settings (``run_key``).

    Refuses a result of other settings, an unreadable one, one that is not this run's or
    whose values are not a result's (:func:`convdrop.lab.train.result.result_problem`:
    types, ranges, the last row and checksum of ``metrics.csv``), and an "ok" one whose
    ``metrics.csv`` does not hold every epoch: each a :class:`RunFolderError` naming the
    file and ``--restart``, raised before the caller writes anything.
    """
    if not paths.result.is_file():
        return None
    result = _read_json(paths, paths.result)
    missing = [key for key in RESULT_KEYS if key not in result]
    if missing:
        raise paths.broken(paths.result, f"no {', '.join(missing)} in it")
    if result["run_key"] != run_key:
        raise RunFolderError(
            f"{paths.root} holds a run with other settings (run_key {result['run_key']!r} "
            f"!= {run_key}); choose another --out, or delete that folder to rerun it"
        )
    rows, metrics = read_metrics_file(paths)
    if result["status"] == "ok":
        check_epochs(paths, rows, epochs, exact=True)
    problem = result_problem(result, method=method, seed=seed, epochs=epochs, rows=rows,
                             metrics=metrics)
    if problem:
        raise paths.broken(paths.result, problem)
    return {k: v for k, v in result.items() if k != CHECKSUM}  # as train_and_record returns it


def _read_json(paths: RunPaths, path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as err:
        raise paths.broken(path, f"cannot read it ({err})") from None
    except ValueError as err:
        raise paths.broken(path, f"not valid JSON ({err})") from None
    except RecursionError:
        raise paths.broken(path, "nested too deeply to be a result") from None
    if not isinstance(data, dict):
        raise paths.broken(path, f"expected a JSON object, got {type(data).__name__}")
    return data


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
    """Per-epoch rows of a run (empty if it has none yet): ``epoch`` an int, the rest floats.

    A row that does not parse, lacks a value or is cut short (the file does not end with
    a line end: an interrupted write) is a :class:`RunFolderError` naming the file and line.
    """
    return read_metrics_file(paths)[0]


def read_metrics_file(paths: RunPaths) -> tuple[list[dict[str, float]], bytes]:
    """:func:`read_metrics`' rows and the file's bytes (``b""`` when there is no file)."""
    try:
        data = paths.metrics.read_bytes()
    except FileNotFoundError:
        return [], b""
    except OSError as err:
        raise paths.broken(paths.metrics, f"cannot read it ({err.strerror or err})") from None
    try:
        text = data.decode("utf-8")
        rows = list(csv.DictReader(io.StringIO(text, newline="")))
    except (UnicodeDecodeError, csv.Error) as err:
        raise paths.broken(paths.metrics, f"cannot read it ({err})") from None
    if text and not text.endswith("\n"):
        raise paths.broken(paths.metrics, "its last line is cut short (no line end: an "
                           "interrupted write or a truncated copy)")
    return [_metrics_row(paths, line, row) for line, row in enumerate(rows, start=2)], data


def _metrics_row(paths: RunPaths, line: int, row: dict[str | None, Any]) -> dict[str, float]:
    """One row of numbers: every column of the header has its value (``""`` for a column an
    older run did not record), none more."""
    try:
        if None in row or None in row.values():
            raise ValueError("a value too many or too few")
        values = {k: float(v) for k, v in row.items() if v != ""}
        epoch = values["epoch"]
        if epoch != int(epoch):
            raise ValueError(epoch)
    except (KeyError, TypeError, ValueError, OverflowError, AttributeError):
        raise paths.broken(paths.metrics, f"line {line} is not a row of numbers with an "
                           "epoch and a value in every column") from None
    return {**values, "epoch": int(epoch)}


def check_listing(paths: RunPaths, path: Path, recorded: Any, listing: str | None, data: str,
                  *, finished: bool) -> None:
    """A run continues, or is reused, only on the images it was trained on: ``listing`` is
    the folder's :attr:`~convdrop.lab.data.index.FolderIndex.listing` now (None for data
    without files: nothing to check), ``recorded`` what ``path`` of the run says."""
    if listing is None or recorded == listing:
        return
    when = "finished" if finished else "was checkpointed"
    problem = (f"records no listing of {data} (an older convdrop)" if recorded is None else
               f"{data} lists other images than when this run {when} (files added, removed "
               "or renamed since)")
    raise RunFolderError(f"{path}: {problem}; restore the folder, or {paths.remedy()} on the "
                         "folder as it is now")


def check_epochs(paths: RunPaths, rows: list[dict[str, Any]], epochs: int, *,
                 exact: bool) -> None:
    """``rows`` are epochs 1..``epochs`` (``exact``) or 1..``epochs`` plus at most one more."""
    numbers = [row["epoch"] for row in rows]
    allowed = (epochs,) if exact else (epochs, epochs + 1)
    if len(numbers) not in allowed or numbers != list(range(1, len(numbers) + 1)):
        shown = f"epochs {numbers[0]}..{numbers[-1]}" if numbers else "no epochs"
        raise paths.broken(paths.metrics, f"holds {len(numbers)} rows ({shown}), but the run "
                           f"{'finished' if exact else 'was checkpointed'} after epoch {epochs}")
