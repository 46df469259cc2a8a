"""Statistics of a comparison: per-method summaries over seeds and Welch's t-test.

Each method is summarized over its seeds (mean ± sample std) and compared with the
control by a two-sided Welch t-test on test accuracy: a confidence interval for the
difference of means and a p-value, uncorrected and Holm-adjusted over the comparisons
of one report (:func:`holm`). Failed runs are left out of every statistic but
counted and listed. :func:`t_interval` is the one-sample interval over seeds that sweeps
and the regime diagnosis (:mod:`convdrop.lab.report.regime`) report.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from convdrop.ops import validate as v

__all__ = ["ALPHA", "CONFIDENCE", "STATUSES", "Interval", "MethodSummary", "Welch", "holm",
           "summarize", "t_interval", "welch"]

ALPHA = 0.05  # significance level for the asterisk and the sentence
CONFIDENCE = 0.95  # level of the interval for the difference of means
STATUSES = ("ok", "failed")


@dataclass(frozen=True)
class Welch:
    """Welch's unequal-variance t-test of mean(a) - mean(b)."""

    diff: float  # mean(a) - mean(b); NaN when a group is empty
    ci_low: float  # confidence interval of diff (t quantile, Welch–Satterthwaite df)
    ci_high: float
    t: float  # diff / standard error
    df: float  # Welch–Satterthwaite degrees of freedom
    p_value: float  # two-sided; NaN when a group has n < 2

    def significant(self, alpha: float = ALPHA) -> bool:
        return self.p_value < alpha  # False for NaN


def _values(xs: Sequence[float], name: str) -> np.ndarray:
    array = np.asarray(xs, dtype=np.float64).reshape(-1)
    if not np.isfinite(array).all():
        raise ValueError(f"{name} must hold finite numbers, got {list(xs)!r}")
    return array


def welch(a: Sequence[float], b: Sequence[float], *, confidence: float = CONFIDENCE) -> Welch:
    """Two-sided Welch t-test and confidence interval for mean(a) - mean(b).

    Computed by ``scipy.stats.ttest_ind(a, b, equal_var=False)`` and its
    ``confidence_interval``; the guards keep scipy away from the cases it answers
    with NaN and warnings. Edge cases, without warnings: a group with n < 2 gives
    the difference with NaN interval, t, df and p.
    When both groups are constant the difference is known exactly: the interval
    collapses to it, df is NaN, and p is 0 if it is non-zero, else 1.
    """
    xa, xb = _values(a, "a"), _values(b, "b")
    v.check_number(confidence, "confidence", 0, 1, include_low=False, include_high=False,
                   expected="in (0, 1)")
    nan = math.nan
    if xa.size == 0 or xb.size == 0:
        return Welch(nan, nan, nan, nan, nan, nan)
    if xa.size < 2 or xb.size < 2:
        return Welch(float(xa.mean() - xb.mean()), nan, nan, nan, nan, nan)
    if np.ptp(xa) == 0 and np.ptp(xb) == 0:  # exact test on the values: means can round
        diff = float(xa[0] - xb[0])
        return Welch(diff, diff, diff, math.copysign(math.inf, diff) if diff else 0.0, nan,
                     0.0 if diff else 1.0)
    with warnings.catch_warnings():  # one constant group: scipy warns, but its variance is 0
        warnings.filterwarnings("ignore", "Precision loss occurred", RuntimeWarning)
        result = stats.ttest_ind(xa, xb, equal_var=False)
        ci = result.confidence_interval(confidence_level=confidence)
    return Welch(float(xa.mean() - xb.mean()), float(ci.low), float(ci.high),
                 float(result.statistic), float(result.df), float(result.pvalue))


@dataclass(frozen=True)
class Interval:
    """Mean of a sample with its t-interval; low and high are NaN when n < 2."""

    mean: float
    low: float
    high: float
    n: int


def t_interval(xs: Sequence[float], confidence: float = CONFIDENCE) -> Interval:
    """Mean ± t(1 - (1 - confidence) / 2, n - 1) · s / sqrt(n)."""
    values = np.asarray(xs, dtype=np.float64)
    if values.size == 0:
        return Interval(math.nan, math.nan, math.nan, 0)
    mean = float(values.mean())
    if values.size < 2:
        return Interval(mean, math.nan, math.nan, 1)
    half = float(stats.t.ppf(0.5 + confidence / 2, values.size - 1)
                 * values.std(ddof=1) / math.sqrt(values.size))
    return Interval(mean, mean - half, mean + half, int(values.size))


@dataclass(frozen=True)
class MethodSummary:
    """One method over its seeds. Accuracies are fractions in [0, 1]."""

    method: str
    n: int  # successful runs in the statistics
    n_failed: int  # failed runs, left out of the statistics
    test_mean: float  # NaN when n == 0
    test_std: float  # sample std across seeds (ddof=1); NaN when n < 2
    train_mean: float
    train_std: float
    gap_mean: float  # train - test accuracy, per run, then averaged
    gap_std: float
    vs_control: Welch | None  # test accuracy minus control's; None for control / no control
    is_control: bool = False
    seeds: tuple[int, ...] = ()  # of the successful runs, in input order
    test_accs: tuple[float, ...] = ()  # one per seed
    train_accs: tuple[float, ...] = ()
    failures: tuple[tuple[int, str], ...] = ()  # (seed, error) of failed runs
    p_holm: float = math.nan  # vs_control's p, Holm-adjusted over every tested method

    @property
    def gaps(self) -> tuple[float, ...]:
        return tuple(tr - te for tr, te in zip(self.train_accs, self.test_accs))


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm–Bonferroni adjusted p-values, in input order; NaN entries stay NaN, uncounted.

    The k-th smallest of m p-values becomes ``max over j <= k of (m - j + 1) * p_(j)``,
    capped at 1: it controls the chance of any false positive among the m at alpha,
    without assuming the tests independent (Holm 1979). scipy has no Holm, so it is here.
    """
    tested = sorted((p, i) for i, p in enumerate(p_values) if not math.isnan(p))
    adjusted = [math.nan] * len(p_values)
    running = 0.0
    for rank, (p, index) in enumerate(tested):
        running = max(running, min(1.0, (len(tested) - rank) * p))
        adjusted[index] = running
    return adjusted


def _mean_std(xs: Sequence[float]) -> tuple[float, float]:
    if not xs:
        return math.nan, math.nan
    array = np.asarray(xs, dtype=np.float64)
    return float(array.mean()), float(array.std(ddof=1)) if array.size > 1 else math.nan


def _accuracy(run: Mapping, key: str) -> float:
    return v.check_number(run.get(key), f"{key} of run {run.get('method')!r} seed "
                          f"{run.get('seed')!r}", 0, 1, expected="an accuracy in [0, 1]")


def _group(results: Sequence[Mapping]) -> dict[str, list[Mapping]]:
    groups: dict[str, list[Mapping]] = {}
    seen: set[tuple[str, object]] = set()
    for run in results:
        method, status = run.get("method"), run.get("status")
        if not isinstance(method, str) or not method:
            raise ValueError(f"method must be a non-empty string, got {method!r} in {run!r}")
        if status not in STATUSES:
            raise ValueError(f"status of run {method!r} seed {run.get('seed')!r} must be one "
                             f"of {STATUSES}, got {status!r}")
        if status == "ok" and (method, run.get("seed")) in seen:
            raise ValueError(f"run {method!r} seed {run.get('seed')!r} succeeded twice; "
                             f"expected one successful run per method and seed")
        if status == "ok":
            seen.add((method, run.get("seed")))
        groups.setdefault(method, []).append(run)
    return groups


def _summary(method: str, runs: list[Mapping], control: MethodSummary | None,
             is_control: bool) -> MethodSummary:
    ok = [run for run in runs if run["status"] == "ok"]
    tests = tuple(_accuracy(run, "test_acc") for run in ok)
    trains = tuple(_accuracy(run, "train_acc") for run in ok)
    gaps = [tr - te for tr, te in zip(trains, tests)]
    failures = tuple((run.get("seed"), str(run.get("error") or "unknown error"))
                     for run in runs if run["status"] == "failed")
    vs = welch(tests, control.test_accs) if control is not None and not is_control else None
    return MethodSummary(
        method, len(ok), len(failures), *_mean_std(tests), *_mean_std(trains),
        *_mean_std(gaps), vs_control=vs, is_control=is_control,
        seeds=tuple(run.get("seed") for run in ok), test_accs=tests, train_accs=trains,
        failures=failures,
    )


def summarize(results: Sequence[Mapping], control: str = "control") -> list[MethodSummary]:
    """Per-method statistics in the order methods first appear in ``results``.

    Each result is a mapping with ``method``, ``seed``, ``status`` ("ok" | "failed"),
    and for ok runs ``test_acc`` and ``train_acc`` in [0, 1]; ``error`` for failures.
    Every method but ``control`` is compared with it (``vs_control``) when present, and
    ``p_holm`` adjusts those p-values for their number.
    """
    groups = _group(results)
    base = _summary(control, groups[control], None, True) if control in groups else None
    summaries = [base if method == control and base is not None
                 else _summary(method, runs, base, False) for method, runs in groups.items()]
    raw = [s.vs_control.p_value if s.vs_control is not None else math.nan for s in summaries]
    return [dataclasses.replace(s, p_holm=adjusted)
            for s, adjusted in zip(summaries, holm(raw))]
