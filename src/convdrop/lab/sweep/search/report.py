"""The report of a search: the verdict from the confirmation, the winner's curse, every
trial, the figures, and the confirmed winner as a spec file.

The verdict is :func:`convdrop.lab.sweep.report.verdict` over the confirmation's
statistics, so its wording and tests are the grid sweep's; the search contributes the
candidates and the size of its own optimism. Files are written atomically.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from convdrop import _io
from convdrop._tables import markdown_table
from convdrop.lab.report import verdicts
from convdrop.lab.spec.experiment import ExperimentSpec
from convdrop.lab.spec.to_toml import spec_to_toml
from convdrop.lab.sweep.report import point_rows, verdict
from convdrop.lab.sweep.search.confirm import Confirmation
from convdrop.lab.sweep.search.settings import shown_seeds
from convdrop.lab.sweep.search.tables import curse_rows, trial_rows

__all__ = ["WINNER_HEADER", "curse_text", "winner_spec", "write_search_report"]

WINNER_HEADER = ("The confirmed winner of a convdrop search (its best setting over fresh seeds)."
                 "\nTrain it, e.g. on more seeds or under torchrun, with\n"
                 "  convdrop train --spec OUT/sweep_spec.toml --seed K --out DIR")

HOW_TO_READ = (
    "Optuna proposed each trial's setting from the [sweep] table read as ranges; a trial "
    "trained it on the trial seeds and scored its mean final validation accuracy (the "
    "pruner could stop it after any epoch). The trial that scores highest is partly lucky, "
    "so the search's estimate of its winner is biased upwards. The best settings and the "
    "control were therefore trained again on fresh seeds that no trial used, and every "
    "statistic in the verdict and the confirmation table comes from those runs only: test "
    "accuracy as a mean with a 95 % t-interval over seeds, the best by mean, 'within noise' "
    "by a two-sided Welch t-test Holm-corrected over the settings compared with the best "
    "(α = {alpha:g}; not proof of equality), and the difference from the control with its "
    "Welch interval and Holm-corrected p-value. The winner's curse is the search's "
    "estimate minus the confirmed mean, in percentage points."
)


def _pct(x: float) -> str:
    return "n/a" if math.isnan(x) else f"{100 * x:.2f}"


def curse_text(confirmation: Confirmation, trial_seeds: str) -> str:
    """The winner's curse of the search's best setting, in words."""
    if not confirmation.curses:
        return "No trial finished, so there was nothing to confirm."
    top = confirmation.curses[0]
    val = top.confirmed_val
    if val.n == 0:
        return f"The search's best setting, {top.setting}, failed every confirmation run."
    interval = "" if math.isnan(val.low) else f" [{_pct(val.low)}, {_pct(val.high)}]"
    gap = 100 * top.val_gap
    size = (f"the search overestimated it by {gap:.2f} pp (the winner's curse)" if gap > 0
            else f"the search underestimated it by {-gap:.2f} pp (no curse this time)")
    text = (f"The search's best setting, {top.setting} (trial {top.trial}), scored "
            f"{_pct(top.search_val)} % validation accuracy on trial seed(s) {trial_seeds}; on "
            f"{val.n} fresh seeds it scores {_pct(val.mean)}{interval} %: {size}.")
    best = confirmation.stats.best
    if best is not None and best != top.setting:
        text += f" The confirmation ranks {best} first."
    return text


def winner_spec(confirmation: Confirmation) -> ExperimentSpec | None:
    """The spec of the confirmed best setting alone (``seeds`` = the confirmation's)."""
    best = confirmation.stats.best
    if best is None:
        return None
    spec = confirmation.sweep.spec
    table = spec.options_for(best).model_dump(exclude_none=True)
    return ExperimentSpec.model_validate({**spec.model_dump(), "methods": [best],
                                          "method_options": {best: table},
                                          "seeds": max(1, len(confirmation.seeds))})


def _counts(trials: Sequence[optuna.trial.FrozenTrial]) -> str:
    counts: dict[str, int] = {}
    for trial in trials:
        counts[trial.state.name.lower()] = counts.get(trial.state.name.lower(), 0) + 1
    return ", ".join(f"{n} {state}" for state, n in sorted(counts.items())) or "none"


def _confirmation_parts(confirmation: Confirmation | None, trial_seeds: str) -> list[str]:
    if confirmation is None:
        return ["## Verdict\n", "Not confirmed (--confirm 0): the trials below are the "
                "search's own estimates, biased upwards for the best of them; no setting is "
                "called best until it is confirmed on fresh seeds.\n"]
    seeds = confirmation.seeds
    parts = ["## Regime (confirmation runs)\n", verdicts.section(confirmation.stats.regimes)] \
        if confirmation.stats.regimes else []
    parts += ["## Verdict\n", f"From the confirmation runs only (seeds {shown_seeds(seeds)}):\n\n"
             + verdict(confirmation.sweep, confirmation.stats) + "\n\n"
             + curse_text(confirmation, trial_seeds) + "\n"]
    header, rows = curse_rows(confirmation.curses, trial_seeds)
    parts += ["## Winner's curse\n",
              markdown_table(header, rows, ["left"] + ["right"] * (len(header) - 1)) + "\n"]
    header, rows = point_rows(confirmation.sweep, confirmation.stats)
    parts += [f"## Confirmation ({len(seeds)} fresh seeds per setting)\n",
              markdown_table(header, rows, ["left"] + ["right"] * (len(header) - 1)) + "\n"]
    return parts


def write_search_report(out: Path, *, title: str, trials: Sequence[optuna.trial.FrozenTrial],
                        confirmation: Confirmation | None, search: Mapping[str, Any],
                        figures: Mapping[str, Path], axes: Sequence[str],
                        run_info: Mapping[str, str], notes: Sequence[str] = ()) -> Path:
    """``out/report.md``: what ran, the verdict and curse, the confirmation, the search,
    every trial, figures, how to read it, failures and the configuration."""
    trial_seeds = search["trial seeds"]
    parts = [f"# {title}\n", "".join(f"- {k}: {v}\n" for k, v in run_info.items())]
    parts += _confirmation_parts(confirmation, trial_seeds)
    parts += ["## Search\n", "".join(f"- {k}: {v}\n" for k, v in search.items())
              + f"- trials in the study: {len(trials)} ({_counts(trials)})\n"]
    header, rows = trial_rows(trials, axes)
    parts += ["## Trials\n", markdown_table(header, rows, ["right", "left", "left"]
                                            + ["right"] * (len(header) - 4) + ["left"]) + "\n"]
    parts += ["## Figures\n"] + [f"![{caption}]({path.name})\n"
                                 for caption, path in figures.items()]
    alpha = confirmation.stats.alpha if confirmation else 0.05
    parts += ["## How to read this\n", HOW_TO_READ.format(alpha=alpha) + "\n"]
    failed = [t for t in trials if t.state == TrialState.FAIL]
    failures = [[f"trial {t.number}", " ".join(str(t.user_attrs.get("error", "failed (see "
                 "the log)")).split())[:300]] for t in failed]
    if confirmation is not None:
        failures += [[f"{r['method']} seed {r['seed']}", " ".join(str(r.get("error")).split())
                      [:300]] for r in confirmation.results if r.get("status") != "ok"]
    parts += ["## Failed trials and runs\n", (markdown_table(("what", "error"), failures)
                                               if failures else "None.") + "\n"]
    if notes:
        parts += ["## Notes\n", "".join(f"- {note}\n" for note in notes)]
    parts += ["## Configuration\n", "```json\n" + json.dumps(dict(search), indent=2,
                                                             default=str) + "\n```\n"]
    return _io.write_text(Path(out) / "report.md", "\n".join(parts))


def winner_toml(confirmation: Confirmation) -> str | None:
    """``sweep_spec.toml`` of the confirmed winner, or None when nothing was confirmed."""
    spec = winner_spec(confirmation)
    return None if spec is None else spec_to_toml(spec, header=WINNER_HEADER)
