"""Matplotlib figures for the experiment runner, drawn without pyplot state.

Each function builds a ``matplotlib.figure.Figure`` on the Agg canvas (headless
and thread-safe, no global figure registry) and writes a PNG atomically. Every
method keeps one colour in all figures; the control is black.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from convdrop import _io
from convdrop.lab.report import regime
from convdrop.lab.report.stats import MethodSummary

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["accuracy_bars", "gap_bars", "learning_curves"]

DPI = 120
CONTROL_COLOUR = "black"
# metrics[method][seed_index] = per-epoch rows with keys epoch, train_loss, train_acc,
# train_eval_acc, val_loss, val_acc, drop_rate, lr (accuracies in [0, 1])
Metrics = Mapping[str, Sequence[Sequence[Mapping[str, float]]]]


def _figure(width: float, height: float, panels: int = 1) -> tuple[Figure, list[Axes]]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure, list(figure.subplots(1, panels, squeeze=False)[0])


def _save(figure: Figure, out: Path) -> Path:
    """Write the PNG to a temporary sibling, then ``os.replace`` it onto ``out``."""
    return _io.write_png(Path(out), figure, dpi=figure.dpi)


def _colours(methods: Sequence[str], control: str = "control") -> dict[str, object]:
    from matplotlib import colormaps

    others = [m for m in methods if m != control]
    if len(others) <= 9:  # tab10 without its grey, which reads as "no method"
        palette = [colormaps["tab10"](i) for i in (0, 1, 2, 3, 4, 5, 6, 8, 9)]
    else:
        palette = [colormaps["tab20"](i) for i in range(20) if i not in (14, 15)]
    colours: dict[str, object] = {m: palette[i % len(palette)] for i, m in enumerate(others)}
    return {**colours, control: CONTROL_COLOUR} if control in methods else colours


def _per_epoch(runs: Sequence[Sequence[Mapping]], key: str) -> tuple[np.ndarray, ...]:
    """Epochs, mean and std (ddof=1, 0 where one seed) of ``key`` over seeds; NaNs skipped."""
    by_epoch: dict[int, list[float]] = {}
    for rows in runs:
        for row in rows:
            value = row.get(key)
            if value is not None and math.isfinite(value):
                by_epoch.setdefault(int(row["epoch"]), []).append(float(value))
    epochs = sorted(by_epoch)
    mean = np.array([np.mean(by_epoch[e]) for e in epochs])
    std = np.array([np.std(by_epoch[e], ddof=1) if len(by_epoch[e]) > 1 else 0.0
                    for e in epochs])
    return np.array(epochs), mean, std


def _curve(ax: Axes, runs: Sequence[Sequence[Mapping]], key: str, colour: object,
           scale: float, dashed: bool = False) -> None:
    """Mean over seeds; solid curves get a ±1 std band, clipped to the metric's range."""
    epochs, mean, std = _per_epoch(runs, key)
    if epochs.size == 0:
        return
    ax.plot(epochs, scale * mean, "--" if dashed else "-", color=colour,
            linewidth=1.2 if dashed else 1.8, alpha=0.7 if dashed else 1.0)
    if not dashed:
        top = scale if key.endswith("acc") else None  # accuracies cannot pass 100 %
        ax.fill_between(epochs, np.clip(scale * (mean - std), 0.0, top),
                        np.clip(scale * (mean + std), 0.0, top), color=colour, alpha=0.15,
                        linewidth=0)


def _grid(panels: int, columns: int = 4) -> tuple[Figure, list[Axes], Axes]:
    """``panels`` small axes, ``columns`` to a row, and one wide axes after them that spans
    the rest of the last row (or a row of its own when the last row is full)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    columns = max(1, min(columns, panels + 1))
    rows = panels // columns + 1
    figure = Figure(figsize=(3.3 * columns, 2.6 * rows + 0.6), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    grid = figure.add_gridspec(rows, columns)
    small = [figure.add_subplot(grid[i // columns, i % columns]) for i in range(panels)]
    wide = figure.add_subplot(grid[rows - 1, panels % columns:])
    return figure, small, wide


def _no_rows(ax: Axes, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes,
            color="firebrick", fontsize="small")


def _accuracy_panel(ax: Axes, method: str, runs: Sequence[Sequence[Mapping]],
                    reference: Sequence[Sequence[Mapping]] | None, colour: object,
                    train: str) -> None:
    """One method's validation (solid, ±1 std band) and train (dashed) accuracy over the
    control's, drawn in grey in every panel as the common reference."""
    if reference is not None:
        _curve(ax, reference, "val_acc", "grey", 100.0)
        _curve(ax, reference, train, "grey", 100.0, dashed=True)
    _curve(ax, runs, "val_acc", colour, 100.0)
    _curve(ax, runs, train, colour, 100.0, dashed=True)
    if not any(runs):
        _no_rows(ax, "no finished epoch\n(see the failed runs)")
    ax.set_title(method, fontsize="medium")


def _drop_rate_panel(ax: Axes, metrics: Metrics, colours: Mapping[str, object]) -> None:
    """Each distinct drop-rate schedule once, labelled with every method that follows it, so
    no line hides another; methods that drop nothing are listed, not drawn."""
    curves: dict[tuple, list[str]] = {}
    idle = []
    for method, runs in metrics.items():
        epochs, mean, _ = _per_epoch(runs, "drop_rate")
        if epochs.size == 0 or not np.any(mean > 0):
            idle.append(method)
            continue
        key = (tuple(epochs), tuple(np.round(mean, 6)))
        curves.setdefault(key, []).append(method)
    styles = ["-", "--", "-.", ":"]
    for i, ((epochs, mean), names) in enumerate(curves.items()):
        ax.plot(epochs, mean, styles[i % len(styles)], color=colours[names[0]], linewidth=2,
                marker="o", markersize=3, label=", ".join(names))
    if curves:
        ax.legend(fontsize="small", loc="lower right")  # below a ramp, beside a constant
    else:
        _no_rows(ax, "no method drops units")
    zero = ", ".join(idle) if len(idle) <= 6 else f"{len(idle)} methods"
    ax.set_title(f"drop rate p (0 for {zero})" if idle else "drop rate p", fontsize="medium")
    ax.set_ylim(bottom=0)


def _control_marks(ax: Axes, runs: Sequence[Sequence[Mapping]], control: str) -> list:
    """Shade where the control's gap grows to new highs, mark its best validation."""
    from matplotlib.lines import Line2D

    found = regime.diagnose(control, runs)
    if found.kind == regime.NO_RUNS:
        return []
    for start, end in regime.gap_growth(runs):
        ax.axvspan(start, end, color="grey", alpha=0.12, linewidth=0, zorder=0)
    ax.axvline(found.peak_epoch, color="black", linestyle=":", linewidth=1)
    return [Line2D([], [], color="grey", alpha=0.25, linewidth=8, label=f"{control}'s gap grows"),
            Line2D([], [], color="black", linestyle=":", linewidth=1,
                   label=f"{control}'s best validation (epoch {found.peak_epoch})")]


def learning_curves(metrics: Metrics, out: Path, *, control: str = "control") -> Path:
    """Small multiples: one accuracy panel per method with the control in each, then the
    drop-rate schedules on their own panel.

    Accuracy is the mean over seeds; validation solid with a ±1 std band, train dashed
    (``train_eval_acc``: eval mode, regularizers off; else ``train_acc``, while training).
    Every panel shades the epochs where the control's gap grows to a new high and marks its
    validation peak (dotted). A method without a finished epoch gets a panel that says so.
    """
    if not metrics:
        raise ValueError("metrics must name at least one method, got an empty mapping")
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    colours = _colours(list(metrics), control)
    reference = metrics.get(control)
    train = regime.train_key([rows for runs in metrics.values() for rows in runs])
    others = [m for m in metrics if m != control] or list(metrics)
    figure, panels, drop_panel = _grid(len(others))
    values = [100 * row[key] for runs in metrics.values() for rows in runs for row in rows
              for key in ("val_acc", train) if math.isfinite(row.get(key, math.nan))]
    low = max(0.0, min(values, default=0.0) - 5.0)
    marks: list = []
    for ax, method in zip(panels, others):
        _accuracy_panel(ax, method, metrics[method],
                        reference if method != control else None, colours[method], train)
        if reference is not None:
            marks = _control_marks(ax, reference, control)
        ax.set_ylim(low, 101)
    _drop_rate_panel(drop_panel, metrics, colours)
    for ax in [*panels, drop_panel]:
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    figure.supxlabel("epoch", fontsize="small")
    figure.supylabel("accuracy (%)", fontsize="small")
    handles = [Line2D([], [], color="black", label="validation (± std over seeds)"),
               Line2D([], [], color="black", linestyle="--", label="train (eval mode)"
                      if train == "train_eval_acc" else "train (regularized)")]
    if reference is not None:
        handles.append(Line2D([], [], color="grey", linewidth=2, label=f"{control} (in each)"))
    handles += marks
    figure.legend(handles=handles, loc="outside upper center", fontsize="small",
                  ncols=max(1, min(len(handles), int(figure.get_figwidth() // 2.2))))
    return _save(figure, out)


def _bar_chart(
    summaries: Sequence[MethodSummary], out: Path, *, means: list[float], stds: list[float],
    seeds: list[Sequence[float]], ylabel: str, title: str, key: str, from_zero: bool,
) -> Path:
    """Bars of ``means`` (already in display units) with std error bars and seed dots."""
    if not summaries:
        raise ValueError("summaries must hold at least one method, got an empty list")
    methods = [s.method for s in summaries]
    control = next((s.method for s in summaries if s.is_control), "control")
    colours = _colours(methods, control)
    figure, (ax,) = _figure(max(6.5, 0.75 * len(methods) + 2.5), 4.8)
    x = np.arange(len(methods))
    heights = np.nan_to_num(means, nan=0.0)
    ax.bar(x, heights, width=0.6, color=[colours[m] for m in methods], alpha=0.55,
           edgecolor=[colours[m] for m in methods], linewidth=1.5)
    ax.errorbar(x, heights, yerr=np.nan_to_num(stds, nan=0.0), fmt="none", ecolor="black",
                capsize=4, linewidth=1.2)
    for i, values in enumerate(seeds):
        offsets = np.linspace(-0.12, 0.12, len(values)) if len(values) > 1 else 0.0
        ax.scatter(i + offsets + np.zeros(len(values)), values, s=16, color="black", zorder=3)
    note = _set_limits(ax, means, stds, seeds, from_zero)
    tops = [max([m + (s if math.isfinite(s) else 0.0), *vs]) if math.isfinite(m) else math.nan
            for m, s, vs in zip(means, stds, seeds)]
    for i, summary in enumerate(summaries):
        _annotate(ax, i, summary, tops[i], stars=not from_zero)
    if any(s.is_control for s in summaries) and math.isfinite(means[methods.index(control)]):
        ax.axhline(means[methods.index(control)], color=CONTROL_COLOUR, linestyle=":",
                   linewidth=1)
    ax.set_xticks(x, methods, rotation=35, ha="right")
    ax.set_ylabel(ylabel + note)
    ax.set_title(title)
    figure.supxlabel(key, fontsize="small", color="dimgrey")
    ax.grid(axis="y", alpha=0.3)
    return _save(figure, out)


def _set_limits(ax: Axes, means: list[float], stds: list[float],
                seeds: list[Sequence[float]], from_zero: bool) -> str:
    """Zoom to the data; return a note for the y label when the axis does not start at 0."""
    values = [v for vs in seeds for v in vs] + [
        m + k * s for m, s in zip(means, stds) for k in (-1, 1) if math.isfinite(m + s)]
    if not values:
        return ""
    low, high = min(values), max(values)
    span = max(high - low, 1.0)
    if from_zero:
        low, high = min(low, 0.0), max(high, 0.0)
        ax.set_ylim(low - 0.1 * span if low < 0 else 0.0, high + 0.15 * span)
        ax.axhline(0, color="grey", linewidth=0.8)
        return ""
    bottom = max(0.0, low - 0.4 * span)
    ax.set_ylim(bottom, min(high + 0.2 * span, 105.0))  # accuracy (%); room for the stars
    return f"\n(axis starts at {bottom:.1f}, not 0)" if bottom > 0 else ""


def _annotate(ax: Axes, index: int, summary: MethodSummary, top: float, stars: bool) -> None:
    """'all runs failed' for a method without successes; '*' just above the bar's error bar
    (or its highest seed) where p < 0.05 vs control."""
    bottom, limit = ax.get_ylim()
    if summary.n == 0:
        ax.text(index, bottom, "all runs\nfailed", ha="center", va="bottom",
                fontsize="small", color="firebrick")
    elif stars and summary.vs_control is not None and summary.vs_control.significant():
        ax.text(index, min(top + 0.01 * (limit - bottom), limit), "*", ha="center",
                va="bottom", fontsize=16)


def accuracy_bars(summaries: Sequence[MethodSummary], out: Path) -> Path:
    """Test accuracy per method: mean bar, ±1 std error bar, one dot per seed."""
    return _bar_chart(
        summaries, out, means=[100 * s.test_mean for s in summaries],
        stds=[100 * s.test_std for s in summaries],
        seeds=[[100 * a for a in s.test_accs] for s in summaries],
        ylabel="test accuracy (%)", from_zero=False, title="Test accuracy",
        key="bars: mean ± std over seeds; dots: seeds; dotted line: control mean;\n"
            "* p < 0.05 vs control (two-sided Welch t-test, uncorrected)",
    )


def gap_bars(summaries: Sequence[MethodSummary], out: Path) -> Path:
    """Generalization gap (train - test accuracy, percentage points) per method."""
    return _bar_chart(
        summaries, out, means=[100 * s.gap_mean for s in summaries],
        stds=[100 * s.gap_std for s in summaries],
        seeds=[[100 * g for g in s.gaps] for s in summaries],
        ylabel="train − test accuracy (pp)", from_zero=True,
        title="Generalization gap (train − test accuracy)",
        key="bars: mean ± std over seeds; dots: seeds; dotted line: control mean",
    )
