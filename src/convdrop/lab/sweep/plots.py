"""Figures of a sweep: the dose-response curve and the heatmap, drawn without pyplot state.

Means with 95 % t-intervals over seeds; the control (p = 0) is black. Each function
builds a ``matplotlib.figure.Figure`` on the Agg canvas and writes a PNG atomically.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from convdrop import _io
from convdrop.lab.sweep.expand import Point
from convdrop.lab.sweep.stats import Interval, PointStats

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["dose_response", "heatmap"]

DPI = 120
Row = tuple[Point, PointStats]  # a point and its statistics


def _figure(width: float, height: float, panels: int) -> tuple[Figure, list[Axes]]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure, list(figure.subplots(1, panels, squeeze=False)[0])


def _bars(interval: Interval) -> tuple[float, float]:
    """Lower and upper error-bar lengths in percent (0 where there is no interval)."""
    if math.isnan(interval.low):
        return 0.0, 0.0
    return 100 * (interval.mean - interval.low), 100 * (interval.high - interval.mean)


def _line(ax: Axes, xs: Sequence[float], intervals: Sequence[Interval], **style: object
          ) -> None:
    ys = [100 * i.mean for i in intervals]
    errors = np.array([_bars(i) for i in intervals]).T.reshape(2, -1)
    ax.errorbar(xs, ys, yerr=errors, capsize=3, marker="o", markersize=4, linewidth=1.6,
                **style)


def _series(rows: Sequence[Row]) -> dict[str, list[Row]]:
    lines: dict[str, list[Row]] = {}
    for point, st in rows:
        lines.setdefault(point.series_label, []).append((point, st))
    return lines


def dose_response(rows: Sequence[Row], control: PointStats | None, out: Path, *,
                  x_label: str, log_p: bool = False) -> Path:
    """Test accuracy and gap against p, and test accuracy against the measured drop budget
    on a log axis; one line per series, the control in black (at p = 0 on a linear p axis,
    a band on a log one: ``log_p`` suits budget sweeps, whose p differ by decades)."""
    from matplotlib import colormaps

    figure, axes = _figure(16, 4.8, 3)
    lines = _series(rows)
    span = max(p.p for p, _ in rows) or 1.0
    for index, (label, members) in enumerate(lines.items()):
        colour = colormaps["tab10"](index % 10)
        members = sorted(members, key=lambda r: r[0].p)
        dodge = (index - (len(lines) - 1) / 2) * 0.012  # lines side by side, bars apart
        xs = [p.p * (1 + dodge) if log_p else p.p + dodge * span for p, _ in members]
        for ax, key in zip(axes[:2], ("test", "gap")):
            start = (([0.0], [getattr(control, key)]) if control is not None and not log_p
                     else ([], []))
            _line(ax, start[0] + xs, start[1] + [getattr(s, key) for _, s in members],
                  color=colour, label=label)
        _line(axes[2], [p.budget * (1 + dodge) for p, _ in members],
              [s.test for _, s in members], color=colour, label=label)
    if control is not None:
        for ax in (axes[0], axes[2]):
            mean, (down, up) = 100 * control.test.mean, _bars(control.test)
            ax.axhline(mean, color="black", linestyle=":", linewidth=1,
                       label="control (p = 0) ± 95 % CI")
            ax.axhspan(mean - down, mean + up, color="black", alpha=0.08, linewidth=0)
    scale = "log" if log_p else "linear"
    axes[0].set(title="Test accuracy", xlabel=x_label, ylabel="test accuracy (%)", xscale=scale)
    axes[1].set(title="Generalization gap (train − test)", xlabel=x_label,
                ylabel="gap (pp)", xscale=scale)
    axes[2].set(title="Test accuracy vs drop budget", xscale="log",
                xlabel="drop budget (expected fraction dropped per forward)",
                ylabel="test accuracy (%)")
    for ax in axes:
        ax.grid(alpha=0.3)
    for ax in (axes[0], axes[2]):  # accuracies: a t-interval of 2 seeds can pass 0 or 100
        low, high = ax.get_ylim()
        ax.set_ylim(max(low, 0.0), min(high, 100.0))
    axes[2].legend(fontsize="small", loc="best")
    figure.supxlabel("mean over seeds with 95 % t-intervals; the control (p = 0) is black",
                     fontsize="small", color="dimgrey")
    return _io.write_png(Path(out), figure, dpi=DPI)


def _x(point: Point) -> float:
    return point.target_budget if point.target_budget is not None else point.p


def heatmap(rows: Sequence[Row], out: Path, *, x_label: str, best: str | None,
            control: PointStats | None = None) -> Path:
    """Mean test accuracy per (series, p) cell; the best is boxed, cells within noise of
    it are marked with a dot; the title gives the control's accuracy."""
    lines = _series(rows)
    xs = sorted({_x(p) for p, _ in rows})
    grid = np.full((len(lines), len(xs)), np.nan)
    for r, members in enumerate(lines.values()):
        for point, st in members:
            grid[r, xs.index(_x(point))] = 100 * st.test.mean
    figure, (ax,) = _figure(max(6.0, 1.1 * len(xs) + 3), max(3.0, 0.55 * len(lines) + 2.0), 1)
    image = ax.imshow(grid, cmap="viridis", aspect="auto")
    middle = np.nanmean([np.nanmin(grid), np.nanmax(grid)])
    for r, members in enumerate(lines.values()):
        for point, st in members:
            c = xs.index(_x(point))
            text = f"{grid[r, c]:.1f}" + ("\n•" if st.within_noise else "")
            ax.text(c, r, text, ha="center", va="center", fontsize="small",
                    color="white" if grid[r, c] < middle else "black",
                    fontweight="bold" if point.name == best else "normal")
            if point.name == best:
                ax.add_patch(_box(c, r))
    figure.colorbar(image, ax=ax, label="test accuracy (%)")
    ax.set_xticks(range(len(xs)), [f"{x:g}" for x in xs])
    ax.set_yticks(range(len(lines)), list(lines))
    title = "Mean test accuracy (%): best boxed, • within noise of it (Welch, Holm)"
    if control is not None and control.test.n:
        title += (f"\ncontrol (p = 0): {100 * control.test.mean:.1f} %"
                  + (", the best" if control.is_best else "")
                  + (", within noise of the best" if control.within_noise
                     and not control.is_best else ""))
    ax.set(xlabel=x_label, title=title)
    return _io.write_png(Path(out), figure, dpi=DPI)


def _box(column: int, row: int) -> object:
    from matplotlib.patches import Rectangle

    return Rectangle((column - 0.5, row - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=2.5)
