"""The shared argument checks added for the modules outside the ops."""

from __future__ import annotations

import math

import pytest

from convdrop.ops import validate as v


@pytest.mark.parametrize(("value", "low", "high"), [(0, 0, None), (7, 4, None), (3, 0, 4)])
def test_check_int_accepts_and_returns(value: int, low: int, high: int | None) -> None:
    assert v.check_int(value, "n", low, high) == value


@pytest.mark.parametrize(("value", "low", "high", "message"), [
    (3, 4, None, "n must be an int >= 4, got 3"),
    (4, 0, 4, r"n must be an int in \[0, 4\), got 4"),
    (-1, 0, 4, r"n must be an int in \[0, 4\), got -1"),
    (True, 0, None, "n must be an int >= 0, got True"),  # bools are not counts
    (2.0, 0, None, "n must be an int >= 0, got 2.0"),
    ("2", 0, None, "n must be an int >= 0, got '2'"),
    (None, 1, None, "n must be an int >= 1, got None"),
])
def test_check_int_names_argument_value_and_expectation(value, low, high, message) -> None:
    with pytest.raises(ValueError, match=f"^{message}$"):
        v.check_int(value, "n", low, high)


def test_check_int_expected_overrides_the_wording() -> None:
    with pytest.raises(ValueError, match=r"^seed must be an int in \[0, 2\*\*32\), got -1$"):
        v.check_int(-1, "seed", 0, 2**32, expected="an int in [0, 2**32)")


def test_check_nonnegative_int() -> None:
    assert v.check_nonnegative_int(0, "step") == 0 and v.check_nonnegative_int(5, "step") == 5
    for bad in (-1, False, 0.0, "0"):
        with pytest.raises(ValueError, match=f"^step must be an int >= 0, got {bad!r}$"):
            v.check_nonnegative_int(bad, "step")


def test_is_number() -> None:
    assert all(v.is_number(x) for x in (0, 1.5, -3, math.inf, math.nan))
    assert not any(v.is_number(x) for x in (True, None, "1", [1], 1j))


def test_check_number_ends() -> None:
    assert v.check_number(0, "x", 0, 1) == 0.0 and isinstance(v.check_number(1, "x", 0, 1), float)
    assert v.check_number(math.inf, "x", 0, math.inf) == math.inf  # a closed infinite end
    for value, kwargs in [(0, {"include_low": False}), (1, {"include_high": False}),
                          (math.nan, {}), (-0.1, {}), (1.1, {}), (True, {}), ("0.5", {})]:
        with pytest.raises(ValueError, match=f"^x must be a number in .*, got {value!r}$"):
            v.check_number(value, "x", 0, 1, **kwargs)


@pytest.mark.parametrize(("kwargs", "interval"), [
    ({}, "[0, 1]"), ({"include_low": False}, "(0, 1]"), ({"include_high": False}, "[0, 1)"),
    ({"include_low": False, "include_high": False}, "(0, 1)"),
])
def test_check_number_message_shows_the_interval(kwargs, interval: str) -> None:
    with pytest.raises(ValueError) as info:
        v.check_number(2, "x", 0, 1, **kwargs)
    assert str(info.value) == f"x must be a number in {interval}, got 2"


def test_check_number_expected_overrides_the_wording() -> None:
    with pytest.raises(ValueError, match="^lr must be a finite number > 0, got inf$"):
        v.check_number(math.inf, "lr", 0, math.inf, include_low=False, include_high=False,
                       expected="a finite number > 0")
