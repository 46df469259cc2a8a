"""Tables and the report of the experiment runner: pure functions, honest reporting.

Each method is summarized over its seeds (mean ± sample std) and compared with the
control by a two-sided Welch t-test on test accuracy: a 95 % confidence interval
for the difference of means and a p-value, beside it Holm-adjusted for the number of
comparisons. "No significant difference" is a result
and the tables say so in words. Failed runs are left out of every statistic but
counted and listed.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from convdrop import _io
from convdrop._tables import NBSP, markdown_table, text_table
from convdrop.lab.report import verdicts
from convdrop.lab.report.regime import Regime
from convdrop.lab.report.stats import (
    ALPHA,
    CONFIDENCE,
    MethodSummary,
    Welch,
    holm,
    summarize,
    welch,
)
from convdrop.ops import validate as v

if TYPE_CHECKING:
    from rich.table import Table

__all__ = [
    "MethodSummary", "Welch", "holm", "render_rich", "render_table", "significance_sentence",
    "summarize", "welch", "write_report", "write_summary_csv",
]

FORMATS = ("markdown", "text")
HEADERS = ("method", "n", "test acc (%)", "train acc (%)", "gap (pp)",
           "Δ vs control (pp) [95 % CI]", "p-value", "p (Holm)")
CSV_COLUMNS = ("method", "n", "n_failed", "test_mean", "test_std", "train_mean", "train_std",
               "gap_mean", "gap_std", "diff", "ci_low", "ci_high", "t", "df", "p_value",
               "p_holm")
# Per-method settings of the report's "Methods" table (fields of lab.base_methods.Method)
SETTINGS_COLUMNS = ("regularizer", "p", "block_size", "schedule", "placement", "batchnorm",
                    "label_smoothing", "cutout", "model")
HOW_TO_READ = (
    "Accuracies are mean ± standard deviation across seeds, so the ± shows how much a "
    "single run varies, not how precisely the mean is known. The gap is train minus test "
    "accuracy, computed per run. Δ is the method's mean test accuracy minus the control's, "
    "in percentage points; its 95 % confidence interval (Welch) is for that difference of "
    "means, and an interval that contains 0 means the data cannot tell the two apart. With "
    "few seeds the intervals are wide and small real effects go undetected. The p-value "
    "column is uncorrected: at α = 0.05 about one comparison in twenty comes out "
    "significant by chance alone. p (Holm) adjusts it for the number of comparisons "
    "(Holm–Bonferroni), so a * there holds for the whole table at once."
)


def _pct(value: float, signed: bool = False) -> str:
    if math.isnan(value):
        return "n/a"
    return f"{100 * value:+.2f}" if signed else f"{100 * value:.2f}"


def _mean_pm_std(mean: float, std: float, signed: bool = False) -> str:
    if math.isnan(mean):
        return "n/a"
    return f"{_pct(mean, signed)}{NBSP}±{NBSP}{_pct(std)}"  # one unit: never wrapped apart


def _p_text(p: float, alpha: float) -> str:
    if math.isnan(p):
        return "n/a"
    text = "< 0.001" if p < 0.001 else f"{p:.3f}"
    return f"{text} *" if p < alpha else text


def _row_cells(s: MethodSummary, alpha: float) -> list[str]:
    """One table row of strings, in the order of ``HEADERS``."""
    n = f"{s.n} (+{s.n_failed} failed)" if s.n_failed else str(s.n)
    vs, delta, p, p_holm = s.vs_control, "—", "—", "—"
    if s.is_control:
        delta = "reference"
    elif vs is not None:
        ci = ("n/a" if math.isnan(vs.ci_low)
              else f"{_pct(vs.ci_low, True)}, {_pct(vs.ci_high, True)}")
        delta, p = f"{_pct(vs.diff, True)} [{ci}]", _p_text(vs.p_value, alpha)
        p_holm = _p_text(s.p_holm, alpha)
    return [s.method, n, _mean_pm_std(s.test_mean, s.test_std),
            _mean_pm_std(s.train_mean, s.train_std),
            _mean_pm_std(s.gap_mean, s.gap_std, signed=True), delta, p, p_holm]


def _markdown(rows: Sequence[Sequence[str]]) -> str:
    rows = [[cell.replace(NBSP, " ") for cell in row] for row in rows]
    return markdown_table(HEADERS, rows, ["left"] + ["right"] * (len(HEADERS) - 1))


def _legend(alpha: float) -> str:
    return (f"Mean ± std over seeds; gap = train − test accuracy; Δ = test accuracy minus "
            f"control's with its {100 * CONFIDENCE:g} % CI; * p < {alpha:g} (two-sided Welch "
            f"t-test: uncorrected, and Holm-adjusted for the number of comparisons).")


def _p_clause(p_value: float) -> str:
    """'p = 0.031' or 'p < 0.001'."""
    text = _p_text(p_value, 0.0)
    return f"p {text}" if text.startswith("<") else f"p = {text}"


def significance_sentence(summaries: Sequence[MethodSummary], alpha: float = ALPHA) -> str:
    """A computed sentence on which methods differ from control, if any."""
    test = f"Welch t-test, α = {alpha:g}"
    compared = [s for s in summaries if s.vs_control is not None]
    if summaries and all(s.n == 0 for s in summaries):
        return "Every run failed, so nothing was tested; the failed runs say why."
    if not any(s.is_control for s in summaries):
        return "No control method in the results, so no differences were tested."
    if not compared:
        return "Only the control was run; there is nothing to compare."
    testable = [s for s in compared if not math.isnan(s.vs_control.p_value)]
    untested = len(compared) - len(testable)
    caveat = (f" {untested} of {len(compared)} comparisons had too few seeds to test (n < 2)."
              if untested else "")
    if not testable:
        return f"Too few seeds to test any difference from control ({test})." + caveat
    hits = [s for s in testable if s.vs_control.significant(alpha)]
    if not hits:
        return f"No method differs significantly from control ({test})." + caveat
    listed = ", ".join(f"{s.method} ({_pct(s.vs_control.diff, True)} pp, "
                       f"{_p_clause(s.vs_control.p_value)})" for s in hits)
    chance = (f" With {len(testable)} comparisons, {len(testable) * alpha:.2g} false positives "
              f"are expected by chance alone; {_holm_clause(hits, alpha)}."
              if len(testable) > 1 else "")
    return f"Significantly different from control ({test}): {listed}.{chance}{caveat}"


def _holm_clause(hits: Sequence[MethodSummary], alpha: float) -> str:
    kept = [s.method for s in hits if s.p_holm < alpha]
    if not kept:
        return ("it does not" if len(hits) == 1 else "none") + \
            " stay significant after Holm's correction"
    if len(kept) == len(hits):
        return ("it stays" if len(hits) == 1 else "all stay") + \
            " significant after Holm's correction"
    verb = "stays" if len(kept) == 1 else "stay"
    return f"after Holm's correction only {', '.join(kept)} {verb} significant"


def _link(path: Path) -> str:
    text = path.as_posix()
    return f"<{text}>" if any(c in text for c in " ()<>") else text


def _failures_markdown(summaries: Sequence[MethodSummary]) -> str:
    rows = [(s.method, str(seed), " ".join(error.split())[:300])
            for s in summaries for seed, error in s.failures]
    if not rows:
        return "None: every run finished."
    table = markdown_table(("method", "seed", "error"), rows, ("left", "right", "left"))
    return f"{len(rows)} run(s) failed and are left out of the statistics.\n\n{table}"


def _csv_row(s: MethodSummary) -> list[object]:
    vs = s.vs_control
    welch_cells = ([] if vs is None else [vs.diff, vs.ci_low, vs.ci_high, vs.t, vs.df, vs.p_value,
                                          s.p_holm])
    cells = [s.test_mean, s.test_std, s.train_mean, s.train_std, s.gap_mean, s.gap_std,
             *(welch_cells or [math.nan] * 7)]
    return [s.method, s.n, s.n_failed, *("" if math.isnan(c) else repr(c) for c in cells)]


def render_table(summaries: Sequence[MethodSummary], *, fmt: str = "markdown",
                 alpha: float = ALPHA, width: int = 120) -> str:
    """The summary table, a one-line legend and the computed significance sentence.

    Args:
        fmt: "markdown" (a pipe table) or "text" (aligned columns for a terminal).
        width: columns of the terminal for "text": cells wrap to fit, names never do.
    """
    if fmt not in FORMATS:
        raise ValueError(f"fmt must be one of {FORMATS}, got {fmt!r}")
    v.check_number(alpha, "alpha", 0, 1, include_low=False, include_high=False,
                   expected="in (0, 1)")
    rows = [_row_cells(s, alpha) for s in summaries]
    if fmt == "markdown":
        table = _markdown(rows)
        legend, sentence = _legend(alpha), significance_sentence(summaries, alpha)
    else:
        table = text_table(HEADERS, rows, width=width)
        legend, sentence = (textwrap.fill(text, max(width, 40)) for text in
                            (_legend(alpha), significance_sentence(summaries, alpha)))
    return f"{table}\n\n{legend}\n\n{sentence}\n"


def render_rich(summaries: Sequence[MethodSummary], *, alpha: float = ALPHA) -> Table:
    """The summary table as a ``rich.table.Table``; significant rows green or red."""
    from rich.table import Table
    from rich.text import Text

    caption = Text(f"{_legend(alpha)}\n{significance_sentence(summaries, alpha)}")
    table = Table(title="Test accuracy over seeds", caption=caption, caption_justify="left")
    longest = max((len(s.method) for s in summaries), default=6)
    for index, header in enumerate(HEADERS):  # names are never cut; the numbers wrap
        table.add_column(header, justify="left" if index == 0 else "right",
                         no_wrap=index == 0, min_width=longest if index == 0 else None)
    for summary in summaries:
        vs = summary.vs_control
        style = "bold" if summary.is_control else None
        if vs is not None and vs.significant(alpha):
            style = "green" if vs.diff > 0 else "red"
        table.add_row(*(Text(cell.replace(NBSP, " ")) for cell in _row_cells(summary, alpha)),
                      style=style)  # Text: no markup
    return table


def write_summary_csv(path: Path, summaries: Sequence[MethodSummary]) -> Path:
    """Write one row per method atomically: fractions, full precision, empty if undefined."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    writer.writerows(_csv_row(s) for s in summaries)
    return _io.write_text(Path(path), buffer.getvalue())


def _settings_markdown(settings: Mapping[str, Mapping[str, object]]) -> str:
    """One row per method: what it regularizes with, where, how strongly, on which model."""
    def shown(value: object) -> str:
        return "—" if value in (None, "", 0, 0.0, False) else "yes" if value is True else str(value)

    rows = [[method, *(shown(values.get(key)) for key in SETTINGS_COLUMNS)]
            for method, values in settings.items()]
    header = ("method", *(key.replace("_", " ") for key in SETTINGS_COLUMNS))
    return markdown_table(header, rows, ["left"] * len(header))


def write_report(
    out_dir: Path, summaries: Sequence[MethodSummary], *, title: str, config: Mapping,
    figures: Mapping[str, Path], notes: Sequence[str] = (),
    run_info: Mapping[str, str] | None = None,
    settings: Mapping[str, Mapping[str, object]] | None = None,
    regimes: Mapping[str, Regime] | None = None,
) -> Path:
    """Write ``out_dir/report.md`` atomically and return its path.

    ``figures`` maps a caption to a PNG path (absolute or relative to the working
    directory); links in the report are relative to ``out_dir``. ``run_info`` (versions,
    device, wall time: :func:`convdrop.lab.runs.provenance.run_info`) and ``settings`` (each
    method's regularizer, p, block size, schedule...) get a section each; ``regimes``
    (:mod:`convdrop.lab.report.regime`) opens the report, before the results.
    """
    out_dir = Path(out_dir)
    parts = [f"# {title}\n"]
    if run_info:
        parts += ["".join(f"- {key}: {value}\n" for key, value in run_info.items())]
    if regimes:
        parts += ["## Regime\n", verdicts.section(regimes)]
    parts += ["## Results\n", render_table(summaries)]
    if settings:
        parts += ["## Methods\n", _settings_markdown(settings) + "\n"]
    if figures:
        parts += ["## Figures\n"] + [
            f"![{caption}]({_link(Path(os.path.relpath(p, out_dir)))})\n"
            for caption, p in figures.items()]
    parts += ["## How to read this\n", HOW_TO_READ + "\n"]
    parts += ["## Failed runs\n", _failures_markdown(summaries) + "\n"]
    if notes:
        parts += ["## Notes\n", "".join(f"- {note}\n" for note in notes)]
    config_json = json.dumps(config, indent=2, default=str, ensure_ascii=False)
    parts += ["## Configuration\n", f"```json\n{config_json}\n```\n"]
    return _io.write_text(out_dir / "report.md", "\n".join(parts))
