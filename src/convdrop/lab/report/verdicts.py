"""The regime in words: the verdict line and the section at the top of a report.

:mod:`convdrop.lab.report.regime` computes a :class:`Regime`; this module writes it:
one plain line per method (the console prints the control's before its table, and
``report.md`` and a sweep's report open with it), a table of every method, and the
thresholds it was decided by, written from :data:`THRESHOLDS` so text and code agree.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from convdrop._tables import markdown_table
from convdrop.lab.report.regime import (
    DISAGREE,
    FITS,
    NO_RUNS,
    OVERFITS,
    RISING,
    THRESHOLDS,
    UNDERFITS,
    Regime,
    Thresholds,
)
from convdrop.lab.report.stats import Interval

__all__ = ["ADVICE", "HEADERS", "cells", "section", "thresholds_text", "verdict"]

ADVICE = {
    OVERFITS: "a regime where regularization can help",
    RISING: "undertrained, so regularizers are expected to cost accuracy here; train longer",
    DISAGREE: "too noisy to tell the regime; run more seeds",
    FITS: "little gap for a regularizer to close",
    UNDERFITS: "regularizers are expected to cost accuracy here; use a larger model, less "
               "augmentation or fewer training images",
    NO_RUNS: "no finished run to read a learning curve from",
}
HEADERS = ("method", "regime", "gap (pp) [95 % CI]", "validation rise (pp) [95 % CI]",
           "train acc (%)", "peak validation (%) (epoch)", "gap ≥ threshold from epoch")


def _pct(x: float, unit: str = " %") -> str:
    return "n/a" if math.isnan(x) else f"{100 * x:.1f}{unit}"


def _signed(x: float) -> str:
    return f"{round(100 * x, 1) + 0.0:+.1f}"  # + 0.0: a rounded -0.0 shows as +0.0


def _pp(i: Interval, unit: str = " pp") -> str:
    if math.isnan(i.mean):
        return "n/a"
    if math.isnan(i.low):
        return f"{_signed(i.mean)}{unit}"
    return f"{_signed(i.mean)}{unit} [{_signed(i.low)}, {_signed(i.high)}]"


def verdict(regime: Regime) -> str:
    """One line: the regime, the numbers that decided it, and what it means for a study.

    E.g. "control overfits from epoch 9 (gap +21.3 pp [+18.0, +24.6] at epoch 30; ...): a
    regime where regularization can help".
    """
    m = regime.method
    if regime.kind == NO_RUNS:
        return f"{m}: {ADVICE[NO_RUNS]}"
    since = f" from epoch {regime.gap_from}" if regime.gap_from else ""
    what = {OVERFITS: f"{m} overfits{since}",
            RISING: f"{m} is still rising", DISAGREE: f"{m}'s seeds disagree",
            FITS: f"{m} fits without overfitting", UNDERFITS: f"{m} underfits"}[regime.kind]
    return f"{what} ({'; '.join(_numbers(regime))}): {ADVICE[regime.kind]}"


def _numbers(r: Regime) -> list[str]:
    """The verdict's numbers, the one that decided it first."""
    gap = f"gap {_pp(r.gap)} at epoch {r.epochs}"
    trend = ("1 epoch: no trend" if math.isnan(r.rise.mean) else
             f"validation {_pp(r.rise)} over the last {r.window} epochs")
    parts = [trend, gap] if r.kind == RISING else [gap, trend]
    if r.disagreement:
        parts.insert(0, r.disagreement)
    parts.append(f"train {_pct(r.train.mean)}")
    if r.epochs > 1:
        parts.append(f"validation peaked at epoch {r.peak_epoch} ({_pct(r.peak_val)})")
    if r.seeds == 1:
        parts.append("1 seed: no intervals")
    if r.train_key != "train_eval_acc":
        parts.append(f"training accuracy from {r.train_key}, measured while training")
    return parts


def cells(r: Regime) -> list[str]:
    """One row of :data:`HEADERS`."""
    since = "—" if r.gap_from is None else str(r.gap_from)
    peak = "—" if not r.peak_epoch else f"{_pct(r.peak_val, '')} ({r.peak_epoch})"
    return [r.method, r.kind, _pp(r.gap, unit=""), _pp(r.rise, unit=""),
            _pct(r.train.mean, unit=""), peak, since]


def thresholds_text(th: Thresholds = THRESHOLDS) -> str:
    """How the regime is decided, with the thresholds' values."""
    return (
        f"The gap is training minus validation accuracy at the last epoch, with training "
        f"accuracy scored in eval mode after every epoch (`train_eval_acc`: no augmentation, "
        f"regularizers off); the rise is the validation accuracy gained over the last "
        f"{100 * th.window_fraction:g} % of the epochs (at least {th.min_window}), from a "
        f"least-squares line; intervals are {100 * th.confidence:g} % t-intervals over seeds. "
        f"**Overfits**: a gap of {100 * th.overfit_gap:g} pp or more, from the first epoch "
        f"after which the mean gap stays there, with training accuracy at "
        f"{100 * th.saturated:g} % or more (the training set is learnt) or validation no "
        f"longer rising. **Still rising**: a mean rise of {100 * th.rising_gain:g} pp or "
        f"more, with its interval above 0 or every seed rising that much. **Seeds "
        f"disagree**: such a rise with neither, or seeds on both sides of the gap threshold "
        f"with an interval that spans it. Below that gap, **fits** with training accuracy at "
        f"{100 * th.saturated:g} % or more, else **underfits**."
    )


def section(regimes: Mapping[str, Regime], control: str = "control") -> str:
    """Markdown: the control's verdict, a table of every method's regime, the thresholds."""
    first = (verdict(regimes[control]) + "." if control in regimes else
             f"No method named {control!r} ran, so no regime is diagnosed for a control.")
    rows = [cells(regime) for regime in regimes.values()]
    table = markdown_table(HEADERS, rows, ["left", "left"] + ["right"] * (len(HEADERS) - 2))
    th = next(iter(regimes.values())).thresholds if regimes else THRESHOLDS
    return f"{first}\n\n{table}\n\n{thresholds_text(th)}\n"
