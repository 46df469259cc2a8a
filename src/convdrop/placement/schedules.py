"""Drop-rate schedules: pure functions of the step.

DropBlock "does not work well" at a fixed rate (arXiv 1810.12890, sec. 3): the
paper ramps keep_prob linearly from 1 to its target over training. Here a schedule
is a pure function ``f(step, total_steps) -> factor in [0, 1]`` and every
regularizer's ``p`` becomes ``target * factor``; :mod:`convdrop.placement.scheduler`
applies them to a model, stepped by the training loop.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from convdrop.ops import validate as v

__all__ = ["SCHEDULES", "Schedule", "constant", "cosine", "get_schedule", "linear", "resolve",
           "step"]

Schedule = Callable[[int, int], float]


def _progress(step: int, total_steps: int) -> float:
    """Fraction of the ramp done, clamped to [0, 1]: steps past the end hold the target."""
    v.check_nonnegative_int(step, "step")
    v.check_positive_int(total_steps, "total_steps")
    return min(step, total_steps) / total_steps


def constant(step: int, total_steps: int) -> float:
    """Factor 1 at every step: the target rate from the start."""
    _progress(step, total_steps)
    return 1.0


def linear(step: int, total_steps: int) -> float:
    """The paper's ramp: ``step / total_steps``, so keep_prob falls linearly from 1."""
    return _progress(step, total_steps)


def cosine(step: int, total_steps: int) -> float:
    """Half-cosine ramp from 0 to 1: slow start, fastest mid-way, slow finish."""
    return 0.5 * (1.0 - math.cos(math.pi * _progress(step, total_steps)))


def step(step: int, total_steps: int, *, levels: int = 4) -> float:
    """Staircase ramp: ``floor(levels * step / total_steps) / levels``.

    With ``levels=4`` the factor is 0, 0.25, 0.5, 0.75 over the four quarters of
    training and 1 from ``total_steps`` on.
    """
    v.check_positive_int(levels, "levels")
    return math.floor(levels * _progress(step, total_steps)) / levels


SCHEDULES: dict[str, Callable[..., float]] = {
    "constant": constant, "linear": linear, "cosine": cosine, "step": step,
}


def get_schedule(name: str, *, warmup_steps: int = 0, **options: Any) -> Schedule:
    """The schedule called ``name`` as ``f(step, total_steps)``, with options bound.

    Args:
        name: one of ``SCHEDULES``: "constant", "linear", "cosine", "step".
        warmup_steps: the factor stays 0 (regularizer off) for this many steps, then
            the schedule runs over the remaining ``total_steps - warmup_steps`` steps.
            With "constant" this is a late start; with "linear" a delayed ramp.
        options: keyword options of that schedule, e.g. ``levels`` for "step".
    """
    if name not in SCHEDULES:
        raise ValueError(f"schedule must be one of {sorted(SCHEDULES)}, got {name!r}")
    v.check_nonnegative_int(warmup_steps, "warmup_steps")
    if options and name != "step":
        raise ValueError(f"schedule {name!r} takes no options, got {sorted(options)}")
    unknown = set(options) - {"levels"}
    if unknown:
        raise ValueError(f"schedule 'step' takes only 'levels', got {sorted(unknown)}")
    base = SCHEDULES[name]

    def schedule(at: int, total_steps: int) -> float:
        _progress(at, total_steps)
        if warmup_steps == 0:
            return base(at, total_steps, **options)
        if warmup_steps >= total_steps:
            raise ValueError(
                f"warmup_steps must be < total_steps, got {warmup_steps} >= {total_steps}"
            )
        if at < warmup_steps:
            return 0.0
        return base(at - warmup_steps, total_steps - warmup_steps, **options)

    schedule.__name__ = name if warmup_steps == 0 else f"{name}+warmup{warmup_steps}"
    return schedule


def resolve(schedule: str | Schedule) -> Schedule:
    """A schedule from its name or a callable ``f(step, total_steps) -> factor``."""
    if isinstance(schedule, str):
        return get_schedule(schedule)
    if not callable(schedule):
        raise ValueError(
            f"schedule must be a name in {sorted(SCHEDULES)} or a callable "
            f"f(step, total_steps) -> factor, got {schedule!r}"
        )
    return schedule
