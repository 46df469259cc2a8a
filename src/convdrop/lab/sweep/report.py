"""The report of a sweep: the verdict, the best setting, the table of every point, figures.

Pure text from :class:`convdrop.lab.sweep.expand.Sweep` and
:class:`convdrop.lab.sweep.stats.SweepStats`; the verdict is written from the numbers
(see :mod:`convdrop.lab.sweep.stats` for the tests behind it). Files are written
atomically.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

from convdrop import _io
from convdrop._tables import markdown_table
from convdrop.lab.report import verdicts
from convdrop.lab.sweep.expand import Point, Sweep
from convdrop.lab.sweep.stats import Interval, PointStats, SweepStats

__all__ = ["describe", "point_rows", "verdict", "write_sweep_csv", "write_sweep_report"]

HOW_TO_READ = (
    "Each point ran over its seeds; accuracies are the mean with a 95 % t-interval over "
    "seeds (mean ± t · s / √n). The gap is train minus test accuracy per run. The drop "
    "budget is the expected fraction of activations dropped per forward pass (Conv and "
    "Linear outputs), measured on each point's model, so a high p in the head and a low p "
    "after every conv land on one axis. The best point has the highest mean test accuracy; "
    "a point is within noise of it when a two-sided Welch t-test of the difference, "
    "Holm-corrected over all the points compared with the best, does not reject equality at "
    "α = {alpha:g}. That is not proof of equality: with few seeds the set is wide. Δ vs "
    "control is the difference of means with its 95 % Welch interval; its p-value is "
    "Holm-corrected over all the points, because the best was picked among them."
)


def _pct(x: float, signed: bool = False) -> str:
    return "n/a" if math.isnan(x) else (f"{100 * x:+.2f}" if signed else f"{100 * x:.2f}")


def _interval(i: Interval, signed: bool = False) -> str:
    if math.isnan(i.low):
        return _pct(i.mean, signed)
    return f"{_pct(i.mean, signed)} [{_pct(i.low, signed)}, {_pct(i.high, signed)}]"


def _p(p: float) -> str:
    return "—" if math.isnan(p) else ("< 0.001" if p < 0.001 else f"{p:.3f}")


def describe(point: Point) -> str:
    """A point in words: "p = 0.1, block 5, head" or "budget 0.001 (p = 0.43), head"."""
    if point.is_control:
        return "no regularization (p = 0)"
    rate = (f"budget {point.target_budget:g} (p = {point.p:.3g})"
            if point.target_budget is not None else f"p = {point.p:g}")
    parts = [rate] + [f"block {point.block_size}"] * (point.block_size is not None)
    parts += [f"placement {point.placement}"] * (point.placement is not None)
    parts += [f"schedule {point.schedule}"] * (point.schedule is not None)
    return ", ".join(parts)


def _vs_control(st: PointStats) -> str:
    w = st.vs_control
    if st.is_control:
        return "reference"
    if w is None:
        return "—"
    ci = "" if math.isnan(w.ci_low) else f" [{_pct(w.ci_low, True)}, {_pct(w.ci_high, True)}]"
    return f"{_pct(w.diff, True)}{ci}"


def _noise(st: PointStats) -> str:
    if st.is_best:
        return "best"
    return "yes" if st.within_noise else ("no" if not math.isnan(st.p_best) else "n/a")


def point_rows(sweep: Sweep, stats: SweepStats) -> tuple[list[str], list[list[str]]]:
    """The header and rows of the per-point table."""
    axes = sweep.settings.varied()
    names = {"block_size": "block", "placement": "placement", "schedule": "schedule"}
    header = ["setting", "p", *(names[a] for a in axes), "drop budget", "n",
              "test acc (%) [95 % CI]", "gap (pp) [95 % CI]", "Δ vs control (pp) [95 % CI]",
              "p vs control (Holm)", "p vs best (Holm)", "within noise of best"]
    rows = []
    for point in sweep.points:
        st = stats.point(point.name)
        n = f"{st.test.n} (+{st.n_failed} failed)" if st.n_failed else str(st.test.n)
        rows.append([point.name, f"{point.p:.3g}",
                     *(str(getattr(point, a) or "—") for a in axes), f"{point.budget:.3g}", n,
                     _interval(st.test), _interval(st.gap, True), _vs_control(st),
                     _p(st.p_control), _p(st.p_best), _noise(st)])
    return header, rows


def _values(points: Sequence[Point], attr: str) -> list:
    return sorted({getattr(p, attr) for p in points if getattr(p, attr) is not None})


def _span(points: Sequence[Point], total: int) -> str:
    """What the points within noise cover: "p from 0.05 to 0.2, block 3, 5 (7 of 12)"."""
    regular = [p for p in points if not p.is_control]
    by_budget = any(p.target_budget is not None for p in regular)
    xs = _values(regular, "target_budget" if by_budget else "p")
    word = "budget" if by_budget else "p"
    parts = ([f"{word} = {xs[0]:g}" if len(xs) == 1 else f"{word} from {xs[0]:g} to {xs[-1]:g}"]
             if xs else [])
    for attr, label in (("block_size", "block"), ("placement", "placement"),
                        ("schedule", "schedule")):
        values = _values(regular, attr)
        if values:
            parts.append(f"{label} {', '.join(map(str, values))}")
    if any(p.is_control for p in points):
        parts.append("and no regularization")
    return f"{'; '.join(parts)} ({len(points)} of the {total} other settings)"


def verdict(sweep: Sweep, stats: SweepStats) -> str:
    """The conclusion in words, computed from the statistics."""
    if stats.best is None:
        return "Every run failed; there is nothing to conclude (see Failed runs)."
    best_point = next(p for p in sweep.points if p.name == stats.best)
    best = stats.point(stats.best)
    noise = [p for p in sweep.points if stats.point(p.name).within_noise and p.name != best.name]
    testable = sum(not math.isnan(pt.p_best) for pt in stats.points)
    if testable == 0:
        return (f"{describe(best_point)} has the highest mean test accuracy "
                f"({_pct(best.test.mean)} %), but with fewer than 2 seeds per point nothing can "
                "be tested; run more seeds.")
    total = len(sweep.points) - 1
    within = (f" Within noise of it (Welch, Holm over {testable} comparisons): "
              f"{_span(noise, total)}." if noise else
              f" Every other setting is significantly worse (Welch, Holm over {testable}).")
    if best.is_control:
        return (f"No setting beats no regularization at this data size: the control is best "
                f"({_interval(best.test)} % test accuracy).{within}")
    w = best.vs_control
    diff = "" if w is None else (f" ({_pct(w.diff, True)} pp vs none, 95 % CI "
                                 f"[{_pct(w.ci_low, True)}, {_pct(w.ci_high, True)}], Holm p = "
                                 f"{_p(best.p_control)})")
    if stats.beats_control:
        return f"{describe(best_point)} is best{diff}.{within}"
    if w is None:
        return f"{describe(best_point)} has the highest mean test accuracy.{within}"
    return (f"No setting beats no regularization at this data size: the best, "
            f"{describe(best_point)}{diff}, is within noise of the control.{within}")


def write_sweep_csv(path: Path, sweep: Sweep, stats: SweepStats) -> Path:
    """One row per point: its settings, budget and statistics, fractions at full precision."""
    rows = []
    for point in sweep.points:
        st = stats.point(point.name)
        rows.append({
            "setting": point.name, "p": point.p, "block_size": point.block_size,
            "placement": point.placement, "schedule": point.schedule,
            "target_budget": point.target_budget, "drop_budget": point.budget, "n": st.test.n,
            "test_mean": st.test.mean, "test_low": st.test.low, "test_high": st.test.high,
            "gap_mean": st.gap.mean, "gap_low": st.gap.low, "gap_high": st.gap.high,
            "diff_vs_control": st.vs_control.diff if st.vs_control else None,
            "p_vs_control_holm": st.p_control, "p_vs_best_holm": st.p_best,
            "best": st.is_best, "within_noise": st.within_noise,
        })
    return _io.write_csv(Path(path), rows, list(rows[0]))


def write_sweep_report(out: Path, sweep: Sweep, stats: SweepStats, *, title: str,
                       figures: Mapping[str, Path], failures: Sequence[Sequence[str]],
                       notes: Sequence[str] = (), run_info: Mapping[str, str] | None = None
                       ) -> Path:
    """``out/report.md``: what ran (``run_info``: versions, device, wall time), the regime of
    the control and of every point (``stats.regimes``), verdict, best, the table, figures,
    how to read, failures, config."""
    header, rows = point_rows(sweep, stats)
    align = ["left"] + ["right"] * (len(header) - 1)
    parts = [f"# {title}\n"]
    if run_info:
        parts += ["".join(f"- {key}: {value}\n" for key, value in run_info.items())]
    if stats.regimes:
        parts += ["## Regime\n", verdicts.section(stats.regimes)]
    parts += ["## Verdict\n", verdict(sweep, stats) + "\n"]
    if stats.best is not None:
        best_point = next(p for p in sweep.points if p.name == stats.best)
        best = stats.point(stats.best)
        parts += ["## Best setting\n",
                  f"**{best.name}**: {describe(best_point)}; test accuracy "
                  f"{_interval(best.test)} % (95 % CI over {best.test.n} seeds), drop budget "
                  f"{best_point.budget:.3g}"
                  + ("" if best.is_control else f", Δ vs control {_vs_control(best)} pp")
                  + ".\n\n"
                  f"Statistically indistinguishable from it: "
                  f"{', '.join(stats.indistinguishable) or 'none'}.\n"]
    parts += ["## Every setting\n", markdown_table(header, rows, align) + "\n"]
    parts += ["## Figures\n"] + [f"![{caption}]({path.name})\n" for caption, path in
                                 figures.items()]
    parts += ["## How to read this\n", HOW_TO_READ.format(alpha=stats.alpha) + "\n"]
    failed = markdown_table(("setting", "seed", "error"), failures, ("left", "right", "left"))
    parts += ["## Failed runs\n", (failed if failures else "None: every run finished.") + "\n"]
    if notes:
        parts += ["## Notes\n", "".join(f"- {note}\n" for note in notes)]
    config = json.dumps({"sweep": sweep.settings.model_dump(), "experiment":
                         sweep.spec.model_dump()}, indent=2, default=str, ensure_ascii=False)
    parts += ["## Configuration\n", f"```json\n{config}\n```\n"]
    return _io.write_text(Path(out) / "report.md", "\n".join(parts))
