"""Statistics of a sweep: intervals over seeds, the best setting and those within noise of it.

The method, stated once and used everywhere:

- Each point's test accuracy and generalization gap get a 95 % t-interval over its seeds
  (mean ± t(0.975, n - 1) · s / sqrt(n)).
- The **best** point is the one with the highest mean test accuracy.
- A point is **statistically indistinguishable** from the best when a two-sided Welch
  t-test of best minus point cannot reject equality at α = 0.05 after a Holm correction
  over all the point-vs-best comparisons. Not rejected is not "equal": with few seeds
  the set is wide, and it says how far the data can see.
- Every point is compared with the control (p = 0) by a Welch t-test, Holm-corrected
  over the points; the best **beats no regularization** only when its corrected p-value
  is below α and its difference is positive. Picking the best of many is a selection,
  which is why its comparison is corrected for all of them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from convdrop.lab.report.regime import Regime
from convdrop.lab.report.stats import (
    ALPHA,
    Interval,
    MethodSummary,
    Welch,
    holm,
    t_interval,
    welch,
)

__all__ = ["Interval", "PointStats", "SweepStats", "analyse", "holm", "t_interval"]


@dataclass(frozen=True)
class PointStats:
    """One point over its seeds, against the best and against the control."""

    name: str
    test: Interval  # test accuracy (fraction)
    gap: Interval  # train - test accuracy (fraction)
    vs_best: Welch | None  # best minus this point; None for the best itself
    p_best: float  # Holm-adjusted p-value of vs_best; NaN when untestable
    vs_control: Welch | None  # this point minus the control; None for the control
    p_control: float  # Holm-adjusted p-value of vs_control
    is_best: bool = False
    within_noise: bool = False  # indistinguishable from the best (the best included)
    is_control: bool = False
    n_failed: int = 0


@dataclass(frozen=True)
class SweepStats:
    points: tuple[PointStats, ...]  # in input order
    best: str | None  # None when no point has a successful run
    alpha: float = ALPHA
    regimes: Mapping[str, Regime] = field(default_factory=dict)  # per point, from its curves

    def point(self, name: str) -> PointStats:
        return next(pt for pt in self.points if pt.name == name)

    @property
    def indistinguishable(self) -> list[str]:
        """Points within noise of the best, the best excluded."""
        return [pt.name for pt in self.points if pt.within_noise and not pt.is_best]

    @property
    def beats_control(self) -> bool:
        if self.best is None:
            return False
        best = self.point(self.best)
        return (not best.is_control and best.vs_control is not None
                and best.vs_control.diff > 0 and best.p_control < self.alpha)


def _welch_all(reference: Sequence[float], others: dict[str, Sequence[float]],
               sign: int) -> tuple[dict[str, Welch], dict[str, float]]:
    """Welch tests of each of ``others`` with ``reference`` (reference - other if sign > 0)
    and their Holm-adjusted p-values."""
    tests = {name: welch(reference, xs) if sign > 0 else welch(xs, reference)
             for name, xs in others.items()}
    adjusted = holm([t.p_value for t in tests.values()])
    return tests, dict(zip(tests, adjusted))


def analyse(summaries: Sequence[MethodSummary], control: str | None = "control",
            alpha: float = ALPHA) -> SweepStats:
    """Best point, the set indistinguishable from it, and each point against the control."""
    ok = [s for s in summaries if s.n > 0]
    best = max(ok, key=lambda s: s.test_mean).method if ok else None
    tests = {s.method: s.test_accs for s in summaries}
    vs_best, p_best = _welch_all(tests[best], {m: xs for m, xs in tests.items() if m != best},
                                 +1) if best else ({}, {})
    ctl = control if control in tests else None
    vs_ctl, p_ctl = _welch_all(tests[ctl], {m: xs for m, xs in tests.items() if m != ctl},
                               -1) if ctl else ({}, {})
    points = []
    for s in summaries:
        adjusted = p_best.get(s.method, math.nan)
        within = s.method == best or (not math.isnan(adjusted) and adjusted >= alpha)
        points.append(PointStats(
            s.method, t_interval(s.test_accs), t_interval(s.gaps), vs_best.get(s.method),
            adjusted, vs_ctl.get(s.method), p_ctl.get(s.method, math.nan),
            is_best=s.method == best, within_noise=within, is_control=s.method == ctl,
            n_failed=s.n_failed))
    return SweepStats(tuple(points), best, alpha)
