"""convdrop.lab.sweep.budgets: a line of a sweep from three probes when the budget is affine
in p, point by point when it is not or when the line is short."""

from __future__ import annotations

import math

import pytest

from convdrop.lab.sweep.budgets import line_budgets


def _measure(points, law):
    """A probe following ``law(line, p)`` that records which points it was asked for."""
    asked: list[int] = []

    def measure(index: int) -> float:
        asked.append(index)
        return law(*points[index])

    return measure, asked


def test_an_affine_line_is_probed_three_times_and_the_rest_follow_the_law():
    rates = [round(0.01 * k, 6) for k in range(1, 101)]
    points = [("a", p) for p in rates]
    measure, asked = _measure(points, lambda line, p: 0.003 + 0.25 * p)
    budgets = line_budgets(points, measure)
    assert asked == [0, 50, 99]  # the lowest, the middle rate as the check, the highest
    assert all(math.isclose(b, 0.003 + 0.25 * p, rel_tol=1e-12) for b, p in zip(budgets, rates))
    assert budgets[0] == 0.003 + 0.25 * rates[0]  # a probed point keeps its probed value


def test_a_line_that_is_not_affine_is_probed_point_by_point():
    points = [("a", p) for p in (0.1, 0.2, 0.3, 0.4, 0.5)]
    measure, asked = _measure(points, lambda line, p: p * p)
    assert line_budgets(points, measure) == [p * p for _, p in points]
    assert sorted(asked) == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("rates", [[0.3], [0.2, 0.1], [0.1, 0.5, 0.3]])
def test_short_lines_are_probed_exactly(rates):
    points = [("a", p) for p in rates]
    measure, asked = _measure(points, lambda line, p: p / 3)
    assert line_budgets(points, measure) == [p / 3 for p in rates]
    assert asked == list(range(len(rates)))


def test_lines_are_kept_apart_and_the_first_point_of_a_line_is_probed_first():
    points = [("a", 0.4), ("b", 0.1), ("a", 0.1), ("b", 0.2), ("a", 0.2), ("a", 0.3),
              ("b", 0.3), ("b", 0.4), ("control", 0.0)]
    slopes = {"a": 1.0, "b": 0.5, "control": 0.0}
    measure, asked = _measure(points, lambda line, p: slopes[line] * p)
    budgets = line_budgets(points, measure)
    assert all(math.isclose(b, slopes[line] * p, rel_tol=1e-12)
               for b, (line, p) in zip(budgets, points))
    assert asked[0] == 0 and asked.index(1) < asked.index(7)
    assert len(asked) == 3 + 3 + 1


def test_a_probe_error_comes_from_the_first_point_of_its_line():
    points = [("a", 0.1), ("bad", 0.5), ("bad", 0.1), ("bad", 0.2), ("bad", 0.3)]

    def measure(index: int) -> float:
        if points[index][0] == "bad":
            raise ValueError(f"point {index}")
        return 0.0

    with pytest.raises(ValueError, match="point 1"):
        line_budgets(points, measure)
