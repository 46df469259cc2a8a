"""Sweeps: a grid over p, block size, placement and schedule, expanded into an ordinary spec.

A ``[sweep]`` table (or a sweep preset, or flags) names one method with a drop rate and
the values to try; :func:`build_sweep` expands it into an
:class:`convdrop.lab.spec.experiment.ExperimentSpec` whose methods are generated variants
(``[methods.NAME]`` with ``base``, ``p``, ``block_size``, ``placement``, ``schedule``)
plus the control (p = 0), so the runner's seeds, resume, workers and run folders apply
unchanged. Each point also gets its drop budget (:func:`convdrop.drop_budget`: the
expected fraction of activations dropped per forward pass) measured on its built model,
so location and magnitude share one axis. With ``budget = [...]`` instead of ``p`` the
sweep solves for the p that gives each budget at each placement.

Layers, lowest first: the small-data defaults, the sweep preset, the spec file's
``[experiment]`` and ``[sweep]`` tables (:class:`convdrop.lab.sweep.settings.SweepSettings`),
then flags. Bad values are one :class:`convdrop.errors.SpecError` line naming the key and
value.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
from pydantic import ValidationError

from convdrop.errors import SpecError
from convdrop.lab.spec.base_methods import BASE_METHODS
from convdrop.lab.spec.experiment import (
    ExperimentSpec,
    build_spec,
    format_validation_error,
)
from convdrop.lab.spec.methods import build_recipe
from convdrop.lab.spec.reader import load_toml
from convdrop.lab.sweep.budgets import line_budgets
from convdrop.lab.sweep.presets import DEFAULT_PRESET, sweep_preset
from convdrop.lab.sweep.settings import AXES, SweepSettings, one_line
from convdrop.lab.train.run_data import load_run_data
from convdrop.placement import drop_budget

__all__ = ["AXES", "DEFAULT_MAX_RUNS", "Point", "Sweep", "SweepSettings", "build_sweep",
           "check_size", "read_sweep_toml"]

REFERENCE_P = 0.5  # the rate at which a placement's budget per unit p is measured
DEFAULT_MAX_RUNS = 1000  # a larger sweep must be asked for (--max-runs)


@dataclass(frozen=True)
class Point:
    """One setting of the sweep: a generated method of the expanded spec."""

    name: str  # the method name in the spec and under runs/
    p: float  # 0 for the control
    block_size: int | None = None  # None: the method's (the model's) default
    placement: str | None = None
    schedule: str | None = None
    target_budget: float | None = None  # a budget sweep's target
    budget: float = 0.0  # measured: expected fraction dropped per forward pass
    is_control: bool = False
    series_label: str = ""  # its line in the curve and row in the heatmap: "block 5, head"

    def options(self, method: str) -> dict[str, Any]:
        """Its ``[methods.NAME]`` table."""
        chosen = {"p": self.p, "block_size": self.block_size, "placement": self.placement,
                  "schedule": self.schedule}
        return {"base": method, **{k: v for k, v in chosen.items() if v is not None}}



def series_label(settings: SweepSettings, values: dict[str, Any]) -> str:
    """The line a point belongs to in the dose-response curve, e.g. "block 5, head"."""
    parts = [f"block {values[a]}" if a == "block_size" else str(values[a])
             for a in settings.varied()]
    return ", ".join(parts) or settings.method


@dataclass(frozen=True)
class Sweep:
    """A sweep's settings, its points (control first) and the spec the runner runs."""

    settings: SweepSettings
    points: tuple[Point, ...]
    spec: ExperimentSpec

    @property
    def control(self) -> Point | None:
        return next((pt for pt in self.points if pt.is_control), None)

    def to_json(self) -> dict[str, Any]:
        return {"settings": self.settings.model_dump(),
                "points": [asdict(pt) for pt in self.points]}


def _rate_text(x: float) -> str:
    return f"{x:g}"


def point_name(settings: SweepSettings, x: float, values: dict[str, Any]) -> str:
    """``dropblock_scheduled-p0.1-b5-head``: the method, the rate, then each varied axis."""
    name = f"{settings.method}-{'budget' if settings.by_budget else 'p'}{_rate_text(x)}"
    for axis in settings.varied():
        name += f"-b{values[axis]}" if axis == "block_size" else f"-{values[axis]}"
    return name


def _combinations(settings: SweepSettings) -> list[tuple[float, dict[str, Any]]]:
    """(p or budget, {axis: value}) for each non-control point, grid or zip order."""
    xs = [x for x in (settings.budget or settings.p or []) if x > 0]
    lists = {axis: getattr(settings, axis) for axis in settings.varied()}
    if settings.pairing == "grid":
        return [(x, dict(zip(lists, combo)))
                for combo in itertools.product(*lists.values()) for x in xs]
    rates = settings.budget or settings.p or []
    lengths = {"budget" if settings.by_budget else "p": len(rates),
               **{a: len(v) for a, v in lists.items()}}
    longest = max(lengths.values())
    if any(n not in (1, longest) for n in lengths.values()):
        raise SpecError(f"sweep: pairing = 'zip' needs lists of one length (or 1); got {lengths}")
    pick = {a: v * longest if len(v) == 1 else v for a, v in lists.items()}
    rates = rates * longest if len(rates) == 1 else rates
    return [(x, {a: v[i] for a, v in pick.items()}) for i, x in enumerate(rates) if x > 0]


def _control(settings: SweepSettings) -> tuple[Point, dict[str, Any]]:
    """The p = 0 point: the method without its regularizer (batch norm and the rest kept)."""
    m = BASE_METHODS[settings.method]
    table: dict[str, Any] = {"base": "batchnorm" if m.batchnorm else "control"}
    if m.label_smoothing:
        table["label_smoothing"] = m.label_smoothing
    return Point("control", 0.0, is_control=True, series_label="control"), table


Probe = Callable[[ExperimentSpec, str], float]  # the drop budget of one method of a spec


def _with_methods(base: ExperimentSpec, tables: dict[str, dict[str, Any]]) -> ExperimentSpec:
    try:
        return ExperimentSpec.model_validate({**base.model_dump(), "methods": list(tables),
                                              "method_options": tables})
    except ValidationError as err:
        raise SpecError(format_validation_error(err, "sweep")) from None


def expand(settings: SweepSettings, base: ExperimentSpec, probe: Probe) -> Sweep:
    """The points of ``settings`` on ``base`` (its methods are replaced) with their budgets."""
    combos = _combinations(settings)
    points: list[Point] = []
    tables: dict[str, dict[str, Any]] = {}
    if settings.control:
        control, table = _control(settings)
        points.append(control)
        tables[control.name] = table
    if settings.by_budget:
        combos = _solve_p(settings, base, combos, probe)
    for x, values in combos:
        p = values.pop("p") if settings.by_budget else x
        point = Point(point_name(settings, x, values), p,
                      target_budget=x if settings.by_budget else None,
                      series_label=series_label(settings, values), **values)
        if point.name in tables:
            raise SpecError(f"sweep: the setting {point.name!r} appears twice")
        points.append(point)
        tables[point.name] = point.options(settings.method)
    if not combos:
        raise SpecError("sweep: no point with p > 0 to run; add a rate to sweep.p")
    spec = _with_methods(base, tables)
    lines = [(("control",) if pt.is_control else (pt.block_size, pt.placement, pt.schedule),
              pt.p) for pt in points]
    budgets = line_budgets(lines, lambda i: _probe(probe, spec, points[i].name))
    return Sweep(settings, tuple(replace(pt, budget=b) for pt, b in zip(points, budgets)), spec)


def _probe(probe: Probe, spec: ExperimentSpec, name: str, shown: str | None = None) -> float:
    """The budget of one setting; a model that cannot be built names the setting."""
    try:
        return probe(spec, name)
    except SpecError as err:
        message = str(err)
        prefix = f"method {name!r}: "
        message = message.removeprefix(prefix)
        raise SpecError(f"sweep setting {shown or name!r}: {message}") from None


def _solve_p(settings: SweepSettings, base: ExperimentSpec,
             combos: list[tuple[float, dict[str, Any]]], probe: Probe
             ) -> list[tuple[float, dict[str, Any]]]:
    """For a budget sweep: the p of each (budget, axes) point. The budget is linear in p
    (dropout, spatial dropout and calibrated DropBlock drop exactly p at every site)."""
    solved = []
    per_unit_of: dict[tuple, float] = {}
    for target, values in combos:
        key = tuple(sorted(values.items()))
        if key not in per_unit_of:
            reference = Point("probe", REFERENCE_P, **values)
            spec = _with_methods(base, {"probe": reference.options(settings.method)})
            shown = point_name(settings, target, values)
            per_unit_of[key] = _probe(probe, spec, "probe", shown) / REFERENCE_P
        per_unit = per_unit_of[key]
        p = target / per_unit if per_unit > 0 else float("inf")
        if p > 1:
            where = ", ".join(f"{k} {v}" for k, v in values.items()) or settings.method
            raise SpecError(f"sweep.budget {target:g} needs p = {p:.3g} > 1 at {where} (the "
                            f"most it drops is {per_unit:.3g}); expected budgets <= "
                            f"{per_unit:.3g} there")
        solved.append((target, {**values, "p": round(p, 6)}))
    return solved


def budget_probe(spec: ExperimentSpec, method: str) -> float:
    """The drop budget of ``method``'s model on one image of the spec's data.

    The budget needs only the shapes a forward sees, so the model is built and run on the
    ``meta`` device, without the spec's weights file: nothing is allocated or computed, so a
    model too large for this machine is refused by the preflight, not by this probe."""
    data = load_run_data(spec, 0)
    unweighted = spec.model_copy(update={"weights": None})  # the shapes do not need them
    with torch.device("meta"):
        recipe = build_recipe(unweighted, method, data.num_classes, data.in_channels)
        example = torch.zeros(1, data.in_channels, data.image_size, data.image_size)
        return drop_budget(recipe.model, example)["total"]


def read_sweep_toml(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The ``[experiment]`` and ``[sweep]`` tables of a sweep spec file."""
    raw = load_toml(path, ("experiment", "sweep"),
                    "[experiment] and [sweep] (a sweep generates its methods)")
    experiment, sweep = dict(raw.get("experiment", {})), dict(raw.get("sweep", {}))
    for key in ("methods", "method_options", "preset"):
        if key in experiment:
            raise SpecError(f"spec key experiment.{key}: a sweep generates its methods; use "
                            f"[sweep] (and sweep.preset for a built-in sweep)")
    return experiment, sweep


def build_sweep(*, preset: str | None = None, spec_file: Path | None = None,
                overrides: dict[str, Any] | None = None,
                sweep_overrides: dict[str, Any] | None = None,
                probe: Probe = budget_probe, max_runs: int | None = None) -> Sweep:
    """Layer preset < spec file < overrides (None ignored) into an expanded sweep.

    With ``max_runs``, a sweep of more runs (settings x seeds) is refused before it is
    expanded."""
    file_exp, file_sweep = read_sweep_toml(spec_file) if spec_file is not None else ({}, {})
    flags = {k: v for k, v in (sweep_overrides or {}).items() if v is not None}
    chosen = preset or file_sweep.pop("preset", None) or (
        None if file_sweep or flags else DEFAULT_PRESET)
    file_sweep.pop("preset", None)
    preset_exp, preset_sweep = sweep_preset(chosen) if chosen else ({"name": "sweep"}, {})
    layers = [preset_sweep, file_sweep, flags]
    for lower, upper in ((0, 1), (0, 2), (1, 2)):  # rates given above replace those below
        if layers[upper].keys() & {"p", "budget"}:
            layers[lower].pop("p", None), layers[lower].pop("budget", None)
    try:
        settings = SweepSettings(**{**preset_sweep, **file_sweep, **flags})
    except ValidationError as err:
        raise SpecError(one_line(err)) from None
    chosen_exp = {k: v for k, v in (overrides or {}).items() if v is not None}
    recipe = preset_exp.pop("on_digits", {})  # on digits only
    base = build_spec(overrides={**preset_exp, **file_exp, **chosen_exp, "methods": ["control"]},
                      on_digits=recipe)
    check_size(settings, base.seeds, max_runs)
    return expand(settings, base, probe)


def check_size(settings: SweepSettings, seeds: int, max_runs: int | None) -> None:
    """A :class:`SpecError` when the sweep has more than ``max_runs`` runs (None: any)."""
    runs = settings.size() * seeds
    if max_runs is not None and runs > max_runs:
        lists = ", ".join(f"sweep.{name}" for name in ("budget" if settings.by_budget else "p",
                                                      *settings.varied()))
        raise SpecError(f"sweep: {settings.size():,} settings x {seeds} seeds = {runs:,} runs, "
                        f"more than the {max_runs:,} allowed; shorten {lists}, or allow them "
                        f"with --max-runs {runs}")
