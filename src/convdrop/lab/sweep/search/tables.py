"""The tables of a search's report: every trial, and the winner's curse per confirmed setting.

Pure functions of Optuna's frozen trials and the confirmation; accuracies are shown in
percent, and written at full precision (fractions) in ``trials.csv``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import optuna
from optuna.trial import TrialState

from convdrop.lab.sweep.search.confirm import Curse
from convdrop.lab.sweep.search.objective import POINT_ATTR, SETTING_ATTR
from convdrop.lab.sweep.search.retry import HOST_ATTR, RETRY_ATTR
from convdrop.lab.sweep.stats import Interval

__all__ = ["curse_rows", "trial_records", "trial_rows"]

AXES = ("block_size", "placement", "schedule")


def _pct(x: float | None, signed: bool = False) -> str:
    if x is None or math.isnan(x):
        return "—"
    return f"{100 * x:+.2f}" if signed else f"{100 * x:.2f}"


def _interval(i: Interval) -> str:
    if i.n == 0:
        return "— (no run finished)"
    if math.isnan(i.low):
        return _pct(i.mean)
    return f"{_pct(i.mean)} [{_pct(i.low)}, {_pct(i.high)}]"


def _seconds(trial: optuna.trial.FrozenTrial) -> float | None:
    if trial.datetime_start is None or trial.datetime_complete is None:
        return None
    return round((trial.datetime_complete - trial.datetime_start).total_seconds(), 1)


def _note(trial: optuna.trial.FrozenTrial) -> str:
    parts = []
    if RETRY_ATTR in trial.user_attrs:
        parts.append(f"re-run of #{trial.user_attrs[RETRY_ATTR]}")
    if trial.state == TrialState.PRUNED and trial.intermediate_values:
        parts.append(f"pruned after step {max(trial.intermediate_values)}")
    if "error" in trial.user_attrs:
        parts.append(" ".join(str(trial.user_attrs["error"]).split())[:160])
    return "; ".join(parts)


def trial_records(trials: Sequence[optuna.trial.FrozenTrial]) -> list[dict[str, Any]]:
    """One dict per trial for ``trials.csv``: its setting, value and how it ended."""
    rows = []
    for trial in trials:
        point = trial.user_attrs.get(POINT_ATTR, {})
        value = trial.value if trial.state == TrialState.COMPLETE else None
        rows.append({
            "trial": trial.number, "state": trial.state.name.lower(),
            "setting": trial.user_attrs.get(SETTING_ATTR, ""), "p": point.get("p"),
            **{axis: point.get(axis) for axis in AXES},
            "target_budget": point.get("target_budget"), "drop_budget": point.get("budget"),
            "val_acc": value, "test_acc": trial.user_attrs.get("test_acc") if value is not None
            else None, "steps_reported": len(trial.intermediate_values),
            "seconds": _seconds(trial), "host": trial.user_attrs.get(HOST_ATTR),
            "note": _note(trial),
        })
    return rows


def trial_rows(trials: Sequence[optuna.trial.FrozenTrial], axes: Sequence[str]
               ) -> tuple[list[str], list[list[str]]]:
    """The Markdown table of every trial: its setting, value and how it ended."""
    names = {"block_size": "block", "placement": "placement", "schedule": "schedule"}
    header = ["trial", "state", "setting", "p", *(names[a] for a in axes), "drop budget",
              "val acc (%)", "test acc (%)", "epochs", "seconds", "note"]
    rows = []
    for record in trial_records(trials):
        budget = record["drop_budget"]
        rows.append([
            str(record["trial"]), record["state"], record["setting"] or "—",
            "—" if record["p"] is None else f"{record['p']:.3g}",
            *("—" if record[a] is None else str(record[a]) for a in axes),
            "—" if budget is None else f"{budget:.3g}", _pct(record["val_acc"]),
            _pct(record["test_acc"]), str(record["steps_reported"]),
            "—" if record["seconds"] is None else f"{record['seconds']:g}", record["note"]])
    return header, rows


def curse_rows(curses: Sequence[Curse], seeds: str) -> tuple[list[str], list[list[str]]]:
    """Per confirmed setting: the search's estimate, the confirmed interval, the gap."""
    header = ["setting", "trial", f"search val acc (%, seeds {seeds})",
              "confirmed val acc (%) [95 % CI]", "curse, val (pp)", "search test acc (%)",
              "confirmed test acc (%) [95 % CI]", "curse, test (pp)"]
    rows = [[c.setting, str(c.trial), _pct(c.search_val), _interval(c.confirmed_val),
             _pct(c.val_gap, True), _pct(c.search_test), _interval(c.confirmed_test),
             _pct(c.test_gap, True)] for c in curses]
    return header, rows
