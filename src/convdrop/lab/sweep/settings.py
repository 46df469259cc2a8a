"""The ``[sweep]`` table of a sweep spec: one method with a drop rate, and the values to try.

Checked as a whole (a pydantic model), so a bad table is one
:class:`convdrop.errors.SpecError` line naming the key and value (:func:`one_line`);
:mod:`convdrop.lab.sweep.expand` expands it into the runner's spec.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from convdrop.errors import did_you_mean
from convdrop.lab.spec.base_methods import BASE_METHODS
from convdrop.lab.spec.methods import PLACEMENTS

__all__ = ["AXES", "SweepSettings", "one_line"]

Rate = Annotated[float, Field(ge=0.0, le=1.0)]
Budget = Annotated[float, Field(gt=0.0, lt=1.0)]
AXES = ("block_size", "placement", "schedule")  # the axes beside p (or budget)


class SweepSettings(BaseModel):
    """The ``[sweep]`` table: one method, and the values of each axis to try."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)  # as ExperimentSpec

    method: str = Field("dropblock_scheduled", description="the method whose drop rate is "
                        "swept (a built-in with a regularizer)")
    p: list[Rate] | None = Field(None, min_length=1, description="drop rates to try; 0 is "
                                 "the control point; none = the preset's")
    budget: list[Budget] | None = Field(
        None, min_length=1, description="drop budgets to try instead of p (expected fraction "
        "dropped per forward): p is solved per placement")
    block_size: list[Annotated[int, Field(ge=1)]] | None = Field(
        None, min_length=1, description="DropBlock block sides; none = the model's")
    placement: list[str] | None = Field(
        None, min_length=1,
        description="placement rules (convdrop.lab.spec.methods.PLACEMENTS); none = the method's")
    schedule: list[Literal["constant", "linear", "cosine", "step"]] | None = Field(
        None, min_length=1, description="drop-rate schedules; none = the method's")
    pairing: Literal["grid", "zip"] = Field("grid", description="grid: every combination; "
                                            "zip: the i-th value of each list together")
    control: bool = Field(True, description="include the control (p = 0) point")
    adaptive: bool = Field(False, description="successive halving over seeds: every point "
                           "starts with min-seeds seeds, then seeds double only for the points "
                           "still within noise of the best, up to seeds")
    min_seeds: int = Field(2, ge=2, description="seeds of every point in the first adaptive "
                           "round")

    @model_validator(mode="after")
    def _consistent(self) -> SweepSettings:
        base = BASE_METHODS.get(self.method)
        if base is None or base.regularizer is None:
            swept = sorted(n for n, m in BASE_METHODS.items() if m.regularizer is not None)
            raise ValueError(f"sweep.method must be a method with a drop rate, one of {swept}; "
                             f"got {self.method!r}{did_you_mean(self.method, swept)}")
        if (self.p is None) == (self.budget is None):
            raise ValueError("sweep.p, sweep.budget: give exactly one of p = [...] and "
                             "budget = [...]")
        if self.block_size is not None and base.regularizer != "dropblock":
            raise ValueError(f"sweep.block_size applies to DropBlock methods; method "
                             f"{self.method!r} uses {base.regularizer}")
        for name in ("p", "budget", *AXES):
            values = getattr(self, name)
            if values is not None and len(set(values)) != len(values):
                raise ValueError(f"sweep.{name} lists a value twice: {values}")
        for place in self.placement or ():
            if place not in PLACEMENTS:
                raise ValueError(f"sweep.placement {place!r} is not a placement: expected one "
                                 f"of {sorted(PLACEMENTS)}")
        if self.p is not None and 0 in self.p and not self.control:
            raise ValueError("sweep.p holds 0, the control point, but control = false")
        return self

    @property
    def by_budget(self) -> bool:
        return self.budget is not None

    def varied(self) -> list[str]:
        """The axes beside p/budget that the table names, in :data:`AXES` order."""
        return [axis for axis in AXES if getattr(self, axis) is not None]

    def size(self) -> int:
        """How many settings the table expands to, the control included, counted without
        expanding it (so a 1,000 x 1,000 grid is refused in a moment, not after hours)."""
        rates = self.budget or self.p or []
        lengths = [len(getattr(self, axis)) for axis in self.varied()]
        positive = sum(1 for x in rates if x > 0)
        if self.pairing == "grid":
            points = positive * math.prod(lengths)
        else:  # zip: one point per position of the longest list, a single value repeated
            longest = max([len(rates), *lengths])
            points = positive if len(rates) == longest else longest * (positive > 0)
        return points + int(self.control)


def one_line(err: ValidationError) -> str:
    """The ``[sweep]`` table's problems as one line naming each key and value; checks
    across fields already name their key; an unknown key gets the closest valid one."""
    parts = []
    for problem in err.errors():
        msg = problem["msg"].removeprefix("Value error, ")
        if not problem["loc"]:
            parts.append(msg)
            continue
        key = "sweep." + ".".join(str(part) for part in problem["loc"])
        if problem["type"] == "extra_forbidden":
            known = list(SweepSettings.model_fields)
            hint = did_you_mean(str(problem["loc"][-1]), known) or \
                f" (expected one of {', '.join(known)})"
            parts.append(f"{key}: unknown key{hint}")
            continue
        got = f" (got {problem['input']!r})" if "input" in problem else ""
        parts.append(f"{key}: {msg[:1].lower()}{msg[1:]}{got}")
    return "; ".join(parts)
