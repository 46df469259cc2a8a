"""What a run's ``result.json`` must hold to be trusted, and the checksum that ties it to its run.

A finished run is never trained again: its ``result.json`` is published in every later
report. So before a result is reused it must be the result of *this* run, checked field by
field (:func:`result_problem`): the method and seed of its folder (a file copied from
another run's folder says another seed), a status of ``ok`` or ``failed``, the epoch count
and world size as ints, every score a finite number in its range (accuracies in [0, 1],
losses >= 0; ``"high"``, ``null``, ``true`` or ``1e308`` are not scores), the validation
accuracy equal to the last row of ``metrics.csv``, and a ``sha256`` over the result's
other fields and the bytes of ``metrics.csv`` (:func:`digest`), so an edited score, or
a result beside another run's metrics, no longer matches. The checksum finds edits and
damage, not forgery: whoever recomputes it can still publish any number.

Pure functions over parsed JSON and bytes: :mod:`convdrop.lab.train.store` reads the files
and raises the error, :mod:`convdrop.lab.runs.run` seals a result before writing it.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["CHECKSUM", "STATUSES", "digest", "result_problem", "sealed"]

CHECKSUM = "sha256"
STATUSES = ("ok", "failed")
ACCURACIES = ("test_acc", "train_acc", "val_acc")
LOSSES = ("test_loss", "train_loss")


def digest(result: Mapping[str, Any], metrics: bytes) -> str:
    """SHA-256 of the result's fields (its checksum left out) and of ``metrics.csv``'s bytes."""
    fields = {k: v for k, v in result.items() if k != CHECKSUM}
    text = json.dumps(fields, sort_keys=True, allow_nan=False)
    return hashlib.sha256(text.encode() + b"\n" + metrics).hexdigest()


def sealed(result: Mapping[str, Any], metrics: bytes) -> dict[str, Any]:
    """``result`` with its checksum, over ``metrics`` (the bytes of the run's metrics.csv)."""
    return {**result, CHECKSUM: digest(result, metrics)}


def _is_int(value: Any) -> bool:
    return type(value) is int


def _number_problem(key: str, value: Any, low: float, high: float) -> str | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"{key} {value!r} is not a number"
    if not math.isfinite(value) or not low <= value <= high:
        return f"{key} {value!r} is outside [{low:g}, {high:g}]"
    return None


def _identity_problem(result: Mapping[str, Any], method: str, seed: int, epochs: int
                      ) -> str | None:
    if result["method"] != method:
        return f"method {result['method']!r}, but it lies in the folder of method {method!r}"
    if not _is_int(result["seed"]) or result["seed"] != seed:
        return f"seed {result['seed']!r}, but it lies in the folder of seed {seed}"
    if result["status"] not in STATUSES:
        return f"status {result['status']!r} is not one of {', '.join(STATUSES)}"
    if not _is_int(result["epochs"]) or result["epochs"] != epochs:
        return f"epochs {result['epochs']!r}, but this run has {epochs}"
    world = result.get("world_size", 1)
    if not _is_int(world) or world < 1:
        return f"world_size {world!r} is not a count of processes"
    if not isinstance(result.get("data_listing", ""), str):
        return f"data_listing {result['data_listing']!r} is not a listing's SHA-256"
    fresh = result.get("weights_fresh", [])
    if not isinstance(fresh, list) or not all(isinstance(key, str) for key in fresh):
        return f"weights_fresh {fresh!r} is not a list of tensor names"
    return _number_problem("seconds", result.get("seconds", 0.0), 0.0, math.inf)


def _scores_problem(result: Mapping[str, Any], rows: Sequence[Mapping[str, Any]]) -> str | None:
    if result["status"] == "failed":
        error = result.get("error")
        return None if isinstance(error, str) else f"error {error!r} is not a reason"
    for key in ACCURACIES + LOSSES:
        if key not in result:
            return f"no {key} in an ok result"
        problem = _number_problem(key, result[key], 0.0, 1.0 if key in ACCURACIES else math.inf)
        if problem:
            return problem
    last = rows[-1].get("val_acc") if rows else None
    if result["val_acc"] != last:
        return f"val_acc {result['val_acc']!r}, but the last row of metrics.csv says {last!r}"
    return None


def result_problem(result: Mapping[str, Any], *, method: str, seed: int, epochs: int,
                   rows: Sequence[Mapping[str, Any]], metrics: bytes) -> str | None:
    """What makes ``result`` not the result of this run (None if nothing does).

    ``result`` holds the keys of ``store.RESULT_KEYS``; ``rows`` and ``metrics`` are the
    parsed rows and the bytes of the run's ``metrics.csv`` (its epochs already checked
    against an ok result). Checked in order, so the message names the first field that is
    wrong; the checksum last, for an edit that leaves every field plausible.
    """
    problem = _identity_problem(result, method, seed, epochs) or _scores_problem(result, rows)
    if problem:
        return problem
    if CHECKSUM not in result:
        return f"no {CHECKSUM} in it (written by an older convdrop, or edited)"
    try:
        expected = digest(result, metrics)
    except (TypeError, ValueError):  # a value JSON cannot hold (NaN, an object)
        expected = None
    if result[CHECKSUM] != expected:
        return (f"its {CHECKSUM} does not match its fields and metrics.csv (edited, or copied "
                "from another run)")
    return None
