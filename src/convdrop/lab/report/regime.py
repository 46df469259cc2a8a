"""Is there anything to regularize? The regime a method trained in, read off its learning curves.

A regularizer can help a model that overfits (training accuracy well above validation,
validation no longer improving); a model that underfits, or is still improving when
training stops, can only lose by it. So every report first says which regime the
control trained in, and a comparison run in the wrong one says so before its table.

The input is each seed's ``metrics.csv`` rows: ``epoch``, ``val_acc`` and
``train_eval_acc``, the training accuracy scored in eval mode after every epoch (up to
5,000 training images, no augmentation, regularizers off). Runs written before that
column existed fall back to ``train_acc``, the running mean over the epoch with
augmentation and the regularizer on, which lags behind; the regime says so.

Per seed, then a t-interval over seeds (:func:`convdrop.lab.report.stats.t_interval`):

- **gap**: training minus validation accuracy at the last epoch;
- **rise**: validation accuracy gained over the last ``window`` epochs (a quarter of
  training, at least ``min_window``): the least-squares slope over them times
  (window - 1), so noise in one epoch does not decide it; undefined after one epoch;
- **train**: training accuracy at the last epoch.

Over the mean curves: the epoch where validation peaked, and the epoch from which the
gap stays at or above ``overfit_gap`` to the end ("overfits from epoch N").

The verdict is the first that applies (thresholds in :class:`Thresholds`). The gap
*splits the seeds* when they fall on both sides of ``overfit_gap`` and its interval spans
it.

1. **overfits** from epoch N: a gap of ``overfit_gap`` or more that does not split the
   seeds, with training accuracy at ``saturated`` or above: the training set is learnt,
   so more epochs cannot close the gap, even if validation still creeps up;
2. **still rising**: the mean rise is at least ``rising_gain``, and its interval lies above
   0 or every seed rose that much;
3. **seeds disagree**: such a mean rise without either, or a gap that splits the seeds;
4. **overfits** from epoch N: a gap of ``overfit_gap`` or more;
5. **fits**: a smaller gap, with training accuracy at ``saturated`` or above;
6. **underfits**: a smaller gap, with training accuracy below ``saturated``.

With one seed there is no interval: the point estimates decide, and the verdict says so.
:mod:`convdrop.lab.report.verdicts` puts a regime into words.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from convdrop.lab.report.stats import CONFIDENCE, Interval, t_interval
from convdrop.ops import validate as v

__all__ = ["DISAGREE", "FITS", "KINDS", "NO_RUNS", "OVERFITS", "RISING", "THRESHOLDS", "UNDERFITS",
           "Regime", "Thresholds", "diagnose", "diagnose_all", "gap_growth", "train_key"]

OVERFITS, RISING, DISAGREE, FITS, UNDERFITS, NO_RUNS = (
    "overfits", "still rising", "seeds disagree", "fits", "underfits", "no runs")
KINDS = (OVERFITS, RISING, DISAGREE, FITS, UNDERFITS, NO_RUNS)
Rows = Sequence[Mapping[str, float]]  # one run's metrics.csv rows


@dataclass(frozen=True)
class Thresholds:
    """Every threshold of the diagnosis, in one place; accuracies are fractions."""

    overfit_gap: float = 0.05  # train - validation accuracy from which a run overfits (5 pp)
    rising_gain: float = 0.01  # validation gained over the window that is "still rising" (1 pp)
    window_fraction: float = 0.25  # the window is this last share of the epochs...
    min_window: int = 5  # ...but at least this many epochs (all of them, if fewer)
    saturated: float = 0.99  # training accuracy that "approaches 100 %"
    confidence: float = CONFIDENCE  # of the intervals over seeds

    def __post_init__(self) -> None:
        for name in ("overfit_gap", "rising_gain", "window_fraction", "saturated"):
            v.check_number(getattr(self, name), name, 0, 1, include_low=False)
        v.check_number(self.confidence, "confidence", 0, 1, include_low=False,
                       include_high=False)
        v.check_positive_int(self.min_window, "min_window")

    def window(self, epochs: int) -> int:
        """Epochs at the end whose validation trend is measured."""
        return min(epochs, max(self.min_window, math.ceil(self.window_fraction * epochs)))


THRESHOLDS = Thresholds()


@dataclass(frozen=True)
class Regime:
    """One method's regime over its seeds (accuracies and gaps as fractions)."""

    method: str
    kind: str  # one of KINDS
    seeds: int  # runs with at least one epoch
    epochs: int  # the last epoch
    window: int  # epochs the rise is measured over
    gap: Interval  # train - validation accuracy at the last epoch
    rise: Interval  # validation gained over the window; NaN after one epoch
    train: Interval  # training accuracy at the last epoch
    peak_epoch: int  # where the mean validation accuracy peaked (0: no runs)
    peak_val: float  # the mean validation accuracy there
    gap_from: int | None  # first epoch from which the mean gap stays >= overfit_gap
    disagreement: str = ""  # how the seeds split, for DISAGREE
    train_key: str = "train_eval_acc"  # the metrics column read as training accuracy
    thresholds: Thresholds = THRESHOLDS

    @property
    def overfits(self) -> bool:
        return self.kind == OVERFITS


def _usable(rows: Rows, key: str) -> list[tuple[int, float, float]]:
    """(epoch, train, validation) of the rows that have both accuracies, by epoch."""
    kept = []
    for row in rows:
        train, val = row.get(key), row.get("val_acc")
        if train is not None and val is not None and math.isfinite(train) and \
                math.isfinite(val):
            kept.append((int(row["epoch"]), float(train), float(val)))
    return sorted(kept)


def train_key(runs: Sequence[Rows]) -> str:
    """``train_eval_acc`` when every row has it, else ``train_acc`` (runs of older versions)."""
    rows = [row for run in runs for row in run]
    return "train_eval_acc" if rows and all("train_eval_acc" in row for row in rows) \
        else "train_acc"


def _rise(curve: list[tuple[int, float, float]], window: int) -> float:
    """Validation gained over the last ``window`` epochs: least-squares slope x (window - 1)."""
    if window < 2:
        return math.nan
    epochs = np.array([e for e, _, _ in curve[-window:]], dtype=np.float64)
    val = np.array([v for _, _, v in curve[-window:]], dtype=np.float64)
    slope = np.polyfit(epochs, val, 1)[0]
    return float(slope * (window - 1))


def _mean_curves(curves: Sequence[list[tuple[int, float, float]]]
                 ) -> tuple[list[int], np.ndarray, np.ndarray]:
    """Epochs, mean training and mean validation accuracy over the seeds that reached them."""
    by_epoch: dict[int, list[tuple[float, float]]] = {}
    for curve in curves:
        for epoch, train, val in curve:
            by_epoch.setdefault(epoch, []).append((train, val))
    epochs = sorted(by_epoch)
    train = np.array([np.mean([t for t, _ in by_epoch[e]]) for e in epochs])
    val = np.array([np.mean([v for _, v in by_epoch[e]]) for e in epochs])
    return epochs, train, val


def _split(values: Sequence[float], interval: Interval, threshold: float) -> bool:
    """Seeds on both sides of ``threshold``, and an interval that spans it (or none)."""
    above = sum(x >= threshold for x in values)
    spans = math.isnan(interval.low) or interval.low < threshold <= interval.high
    return 0 < above < len(values) and spans


def _kind(gaps: Sequence[float], rises: Sequence[float], gap: Interval, rise: Interval,
          train: float, th: Thresholds) -> tuple[str, str]:
    gap_split = _split(gaps, gap, th.overfit_gap)
    if not gap_split and gap.mean >= th.overfit_gap and train >= th.saturated:
        return OVERFITS, ""  # the training set is learnt: more epochs cannot close the gap
    if not math.isnan(rise.mean) and rise.mean >= th.rising_gain:
        if math.isnan(rise.low) or rise.low > 0 or min(rises) >= th.rising_gain:
            return RISING, ""
        return DISAGREE, (f"{sum(r >= th.rising_gain for r in rises)} of {len(rises)} seeds "
                          f"still rising by {100 * th.rising_gain:g} pp or more")
    if gap_split:
        return DISAGREE, (f"{sum(g >= th.overfit_gap for g in gaps)} of {len(gaps)} seeds with "
                          f"a gap of {100 * th.overfit_gap:g} pp or more")
    if gap.mean >= th.overfit_gap:
        return OVERFITS, ""
    return (FITS if train >= th.saturated else UNDERFITS), ""


def diagnose(method: str, runs: Sequence[Rows], thresholds: Thresholds = THRESHOLDS) -> Regime:
    """The regime of ``method`` from its runs' metrics rows (one sequence per seed).

    Runs without a usable epoch are left out; none at all gives kind ``"no runs"``.
    """
    th = thresholds
    key = train_key(runs)
    curves = [c for c in (_usable(rows, key) for rows in runs) if c]
    nan = Interval(math.nan, math.nan, math.nan, 0)
    if not curves:
        return Regime(method, NO_RUNS, 0, 0, 0, nan, nan, nan, 0, math.nan, None,
                      train_key=key, thresholds=th)
    epochs = max(c[-1][0] for c in curves)
    window = th.window(min(len(c) for c in curves))
    gaps = [c[-1][1] - c[-1][2] for c in curves]
    rises = [_rise(c, window) for c in curves]
    gap = t_interval(gaps, th.confidence)
    rise = t_interval(rises, th.confidence) if window > 1 else nan
    train = t_interval([c[-1][1] for c in curves], th.confidence)
    kind, disagreement = _kind(gaps, rises, gap, rise, train.mean, th)
    at, mean_train, mean_val = _mean_curves(curves)
    peak = int(np.argmax(mean_val))
    over = (mean_train - mean_val) >= th.overfit_gap
    start = len(over)
    while start > 0 and over[start - 1]:
        start -= 1
    return Regime(method, kind, len(curves), epochs, window, gap, rise, train, at[peak],
                  float(mean_val[peak]), at[start] if start < len(over) else None,
                  disagreement, key, th)


def diagnose_all(curves: Mapping[str, Sequence[Rows]], thresholds: Thresholds = THRESHOLDS
                 ) -> dict[str, Regime]:
    """:func:`diagnose` for every method, in the mapping's order."""
    return {method: diagnose(method, runs, thresholds) for method, runs in curves.items()}


def gap_growth(runs: Sequence[Rows]) -> list[tuple[int, int]]:
    """Spans (from epoch, to epoch) over which the mean train - validation gap grows to a
    new high, above every epoch before: the overfitting phase, without the epoch-to-epoch
    noise of a gap that has stopped growing. Consecutive epochs merge into one span; the
    learning-curve figure shades them."""
    curves = [c for c in (_usable(rows, train_key(runs)) for rows in runs) if c]
    if not curves:
        return []
    epochs, train, val = _mean_curves(curves)
    gap = train - val
    spans: list[tuple[int, int]] = []
    for i in range(1, len(epochs)):
        if gap[i] > gap[:i].max():
            if spans and spans[-1][1] == epochs[i - 1]:
                spans[-1] = (spans[-1][0], epochs[i])
            else:
                spans.append((epochs[i - 1], epochs[i]))
    return spans
