"""A ``[sweep]`` table read as a search space, and a trial's proposal read back as a setting.

The table's lists become ranges: p (or the drop budget) is continuous on a log scale
between its smallest and largest non-zero value (0 is the control, which is confirmed,
never searched), the block size an integer between its smallest and largest value, and
placement and schedule categorical over the listed names. An axis with one value is held
fixed; an axis the table does not name keeps the method's default. ``--sampler grid``
walks the listed values instead. A proposed rate is rounded to :data:`RATE_DIGITS`
significant digits, so setting names stay readable and two trials that propose the same
setting share its run folder (the second finds the run finished).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from convdrop.errors import SpecError
from convdrop.lab.sweep.settings import SweepSettings

__all__ = ["RATE_DIGITS", "Space", "differences", "space_of", "suggest", "trial_table"]

RATE_DIGITS = 3


@dataclass(frozen=True)
class Space:
    """What a study searches; ``None`` for an axis the table does not name."""

    method: str
    rate: str  # "p" or "budget"
    rates: tuple[float, float]  # log-uniform range, low == high when fixed
    block_size: tuple[int, int] | None = None  # inclusive range
    placement: tuple[str, ...] | None = None
    schedule: tuple[str, ...] | None = None
    listed: tuple[tuple[str, tuple[Any, ...]], ...] = ()  # the table's values, for grid

    def to_json(self) -> dict[str, Any]:
        """What identifies the space in a study (the listed values do not: a grid walks
        a subset of the same space)."""
        fields = {k: (list(v) if isinstance(v, tuple) else v)
                  for k, v in asdict(self).items() if k not in ("listed", "rate", "rates")}
        return {**fields, self.rate: list(self.rates)}

    def describe(self) -> str:
        """In words: "p log-uniform in [0.05, 0.3]; block_size integer in [1, 5]"."""
        searched = self.distributions()
        parts = [f"{self.method}:"]
        for axis, values in ((self.rate, self.rates), ("block_size", self.block_size),
                             ("placement", self.placement), ("schedule", self.schedule)):
            if values is None:
                continue
            if axis not in searched:
                parts.append(f"{axis} = {values[0]} (fixed)")
            elif axis == self.rate:
                parts.append(f"{axis} log-uniform in [{values[0]:g}, {values[1]:g}]")
            elif axis == "block_size":
                parts.append(f"{axis} integer in [{values[0]}, {values[1]}]")
            else:
                parts.append(f"{axis} one of {', '.join(values)}")
        return parts[0] + " " + "; ".join(parts[1:])

    def distributions(self) -> dict[str, BaseDistribution]:
        """Optuna's distribution of every searched (not fixed) axis."""
        found: dict[str, BaseDistribution] = {}
        if self.rates[0] < self.rates[1]:
            found[self.rate] = FloatDistribution(*self.rates, log=True)
        if self.block_size and self.block_size[0] < self.block_size[1]:
            found["block_size"] = IntDistribution(*self.block_size)
        for axis in ("placement", "schedule"):
            names = getattr(self, axis)
            if names and len(names) > 1:
                found[axis] = CategoricalDistribution(names)
        return found

    def grid(self) -> dict[str, list[Any]]:
        """The listed values of every searched axis, for Optuna's GridSampler."""
        return {axis: list(values) for axis, values in self.listed
                if axis in self.distributions()}


def space_of(settings: SweepSettings) -> Space:
    """The search space of a validated ``[sweep]`` table; a table that cannot be searched
    is one :class:`SpecError` line naming its key."""
    if settings.pairing == "zip":
        raise SpecError("sweep.pairing: 'zip' pairs listed values, but a search reads each "
                        "list as a range; use pairing = 'grid' (the default) with --search")
    if settings.adaptive:
        raise SpecError("sweep.adaptive: successive halving over seeds is the grid's; a "
                        "search stops weak trials with --pruner and confirms the best over "
                        "--seeds; set adaptive = false")
    rate = "budget" if settings.by_budget else "p"
    rates = sorted(x for x in getattr(settings, rate) if x > 0)
    blocks = settings.block_size
    space = Space(
        settings.method, rate, (rates[0], rates[-1]),
        (min(blocks), max(blocks)) if blocks else None,
        tuple(settings.placement) if settings.placement else None,
        tuple(settings.schedule) if settings.schedule else None,
        ((rate, tuple(rates)),
         *((axis, tuple(getattr(settings, axis))) for axis in settings.varied())))
    if not space.distributions():
        raise SpecError(f"sweep: nothing to search, every axis has one value ({rate} = "
                        f"{rates[0]:g}); give a range, e.g. {rate} = [{rates[0]:g}, "
                        f"{min(1.0, 4 * rates[0]):g}]")
    return space


def _round(x: float) -> float:
    return float(f"{x:.{RATE_DIGITS}g}")


def suggest(trial: optuna.Trial, space: Space) -> dict[str, Any]:
    """The trial's setting: every axis the table names, fixed or proposed."""
    low, high = space.rates
    values: dict[str, Any] = {space.rate: _round(
        trial.suggest_float(space.rate, low, high, log=True) if low < high else low)}
    if space.block_size:
        lo, hi = space.block_size
        values["block_size"] = trial.suggest_int("block_size", lo, hi) if lo < hi else lo
    for axis in ("placement", "schedule"):
        names = getattr(space, axis)
        if names:
            values[axis] = (trial.suggest_categorical(axis, list(names)) if len(names) > 1
                            else names[0])
    return values


def trial_table(settings: SweepSettings, values: Mapping[str, Any]) -> SweepSettings:
    """The one-point ``[sweep]`` table of a trial (no control), for ``expand``."""
    return SweepSettings(method=settings.method, **{axis: [value] for axis, value in
                                                    values.items()},
                         control=False, pairing="grid", adaptive=False)


def _shown(value: Any) -> str:
    if value is None:
        return "not searched"
    if isinstance(value, list) and len(value) == 2 and all(
            isinstance(x, (int, float)) and not isinstance(x, bool) for x in value):
        return f"{value[0]:g}..{value[1]:g}"
    if isinstance(value, list):
        return ", ".join(map(str, value))
    return str(value)


def differences(stored: Mapping[str, Any], mine: Mapping[str, Any]) -> list[str]:
    """``["block_size 1..5 there, 1..7 now", ...]`` between two :meth:`Space.to_json`."""
    changes = []
    for key in sorted(set(stored) | set(mine)):
        there, now = stored.get(key), mine.get(key)
        if there == now or (isinstance(there, float) and isinstance(now, float)
                            and math.isclose(there, now)):
            continue
        changes.append(f"{key} {_shown(there)} there, {_shown(now)} now")
    return changes
