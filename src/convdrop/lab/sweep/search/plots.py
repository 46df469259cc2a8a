"""Figures of a search: its history with the confirmed accuracies, and parameter importances.

Drawn here rather than with ``optuna.visualization.matplotlib``, which switches pyplot's
global style (``plt.style.use("ggplot")``) in the calling process and cannot show the
confirmation; the importances themselves are Optuna's (fANOVA, see
:func:`param_importances`). Each figure is a ``matplotlib.figure.Figure`` on the Agg
canvas, written atomically.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import optuna
from matplotlib.ticker import MaxNLocator
from optuna.importance import FanovaImportanceEvaluator
from optuna.trial import TrialState

from convdrop import _io
from convdrop.lab.sweep.search.confirm import Curse
from convdrop.lab.sweep.stats import Interval

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["history", "importances", "param_importances"]

DPI = 120


def _figure(width: float, height: float) -> tuple[Figure, Axes]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure, figure.subplots()


def _save(figure: Figure, path: Path) -> Path:
    return _io.write_png(Path(path), figure, dpi=DPI)


def _last(trial: optuna.trial.FrozenTrial) -> float | None:
    steps = trial.intermediate_values
    return steps[max(steps)] if steps else None


def history(trials: Sequence[optuna.trial.FrozenTrial], curses: Sequence[Curse],
            path: Path, control: Interval | None = None) -> Path:
    """Each trial's value (pruned ones at their last reported accuracy), the best so far,
    and each confirmed setting's mean with its 95 % interval beside the trial it came from,
    joined to the search's estimate: the drop is the winner's curse. ``control``: the
    control's confirmed validation accuracy, a dashed line."""
    figure, ax = _figure(7.5, 4.2)
    done = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None
            and not math.isnan(t.value)]
    pruned = [(t.number, _last(t)) for t in trials if t.state == TrialState.PRUNED]
    pruned = [(n, v) for n, v in pruned if v is not None]
    ax.scatter([t.number for t in done], [100 * t.value for t in done], s=18,
               color="tab:blue", label="trial (validation accuracy)", zorder=3)
    if pruned:
        ax.scatter([n for n, _ in pruned], [100 * v for _, v in pruned], s=18, marker="x",
                   color="0.55", label="pruned (last epoch reported)", zorder=3)
    if done:
        ordered = sorted(done, key=lambda t: t.number)
        best, running = [], -math.inf
        for trial in ordered:
            running = max(running, trial.value)
            best.append(100 * running)
        ax.step([t.number for t in ordered], best, where="post", color="tab:blue", alpha=0.5,
                linewidth=1.2, label="best so far")
    for index, curse in enumerate(curses):
        mean = curse.confirmed_val
        if mean.n == 0:
            continue
        x = curse.trial + 0.35
        low = 0 if math.isnan(mean.low) else 100 * (mean.mean - mean.low)
        high = 0 if math.isnan(mean.high) else 100 * (mean.high - mean.mean)
        ax.plot([curse.trial, x], [100 * curse.search_val, 100 * mean.mean], color="tab:red",
                linewidth=0.8, alpha=0.7)
        ax.errorbar([x], [100 * mean.mean], yerr=[[low], [high]], fmt="D", color="tab:red",
                    markersize=4, capsize=3, zorder=4,
                    label=f"confirmed over {mean.n} fresh seeds" if index == 0 else None)
    if control is not None and control.n:
        ax.axhline(100 * control.mean, color="black", linestyle="--", linewidth=1,
                   label=f"control, confirmed over {control.n} fresh seeds")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    low, high = ax.get_ylim()  # a t-interval of few seeds can leave [0, 100]
    ax.set_ylim(max(low, -2), min(high, 102))
    ax.set_xlabel("trial")
    ax.set_ylabel("validation accuracy (%)")
    ax.set_title("Search history and confirmation")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    return _save(figure, path)


def param_importances(study: optuna.Study) -> dict[str, float] | None:
    """Optuna's fANOVA importances of the searched parameters (seeded, so a rerun draws
    the same); None when they cannot be computed (fewer than two finished trials, or
    values that do not vary)."""
    try:
        found = optuna.importance.get_param_importances(
            study, evaluator=FanovaImportanceEvaluator(seed=0))
    except (ValueError, RuntimeError):
        return None
    return dict(found) if found and all(math.isfinite(v) for v in found.values()) else None


def importances(values: Mapping[str, float], path: Path) -> Path:
    """Horizontal bars, the most important parameter on top."""
    figure, ax = _figure(6.0, 0.6 + 0.5 * len(values))
    names = sorted(values, key=values.get)
    ax.barh(names, [values[n] for n in names], color="tab:blue")
    for y, name in enumerate(names):
        ax.text(values[name], y, f" {values[name]:.2f}", va="center", fontsize=8)
    ax.set_xlim(0, max(1.0, max(values.values()) * 1.15))
    ax.set_xlabel("importance (fANOVA: share of the variance of validation accuracy)")
    ax.set_title("Parameter importances")
    return _save(figure, path)
