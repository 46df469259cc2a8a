"""The drop budget of every point of a sweep, from a few probes per line, not one per point.

A probe builds a setting's model and runs it once (tens of milliseconds), so probing each
point made a 100 x 100 grid sit silent for minutes before its first line. Along one line
of a sweep (one block size, placement and schedule) only p changes, and the budget is
affine in p: dropout, spatial dropout and calibrated DropBlock drop a fixed multiple of
p at each of their sites, and regularizers of the model's own add a constant. So a line is
probed at its lowest and highest p, the affine law is checked at a third p, and its other
points follow from the law. A line where the check fails (a regularizer that is not
affine in p) is probed point by point, as before. Lines of up to three points are probed
point by point, so small sweeps measure every budget exactly as a probe does.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Sequence

__all__ = ["RELATIVE_TOLERANCE", "line_budgets"]

RELATIVE_TOLERANCE = 1e-9  # how far the third probe may sit from the line the first two give
ABSOLUTE_TOLERANCE = 1e-15


def line_budgets(points: Sequence[tuple[Hashable, float]], measure: Callable[[int], float]
                 ) -> list[float]:
    """The budget of each ``(line, p)`` point; ``measure(i)`` probes point ``i``.

    Probes go in point order within each line, so a setting that cannot be built is
    reported as the first such point of the sweep would be.
    """
    lines: dict[Hashable, list[int]] = {}
    for index, (line, _) in enumerate(points):
        lines.setdefault(line, []).append(index)
    budgets = [0.0] * len(points)
    for members in lines.values():
        for index, value in _one_line(members, [points[i][1] for i in members], measure):
            budgets[index] = value
    return budgets


def _anchors(rates: Sequence[float]) -> list[float]:
    """The rates to probe on a line: lowest, highest, and a check between (the line's first
    point where it is neither, else the middle rate)."""
    ordered = sorted(set(rates))
    low, high = ordered[0], ordered[-1]
    check = rates[0] if rates[0] not in (low, high) else ordered[len(ordered) // 2]
    return [low, high, check]


def _one_line(members: list[int], rates: list[float], measure: Callable[[int], float]
              ) -> list[tuple[int, float]]:
    if len(set(rates)) <= 3:
        return [(index, measure(index)) for index in members]
    anchors = _anchors(rates)
    probed: dict[float, float] = {}
    for index, rate in zip(members, rates):
        if rate in anchors and rate not in probed:
            probed[rate] = measure(index)
    low, high, check = anchors
    slope = (probed[high] - probed[low]) / (high - low)

    def law(rate: float) -> float:
        return probed[low] + (rate - low) * slope

    if not math.isclose(law(check), probed[check], rel_tol=RELATIVE_TOLERANCE,
                        abs_tol=ABSOLUTE_TOLERANCE):
        return [(index, probed[rate] if rate in probed else measure(index))
                for index, rate in zip(members, rates)]
    return [(index, probed[rate] if rate in probed else law(rate))
            for index, rate in zip(members, rates)]
