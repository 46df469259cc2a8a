"""Tables and the report of the experiment runner: pure functions, honest reporting.

Each method is summarized over its seeds (mean ± sample std) and compared with the
control by a two-sided Welch t-test on test accuracy: a 95 % confidence interval
for the difference of means and a p-value. "No significant difference" is a result
and the tables say so in words. Failed runs are left out of every statistic but
counted and listed.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from convdrop import _io
from convdrop._tables import markdown_table
from convdrop.lab.stats import ALPHA, CONFIDENCE, MethodSummary, Welch, summarize, welch
from convdrop.ops import validate as v

if TYPE_CHECKING:
    from rich.table import Table

__all__ = [
    "MethodSummary", "Welch", "render_rich", "render_table", "significance_sentence",
    "summarize", "welch", "write_report", "write_summary_csv",
]

FORMATS = ("markdown", "text")
HEADERS = ("method", "n", "test acc (%)", "train acc (%)", "gap (pp)",
           "Δ vs control (pp) [95 % CI]", "p-value")
CSV_COLUMNS = ("method", "n", "n_failed", "test_mean", "test_std", "train_mean", "train_std",
               "gap_mean", "gap_std", "diff", "ci_low", "ci_high", "t", "df", "p_value")
HOW_TO_READ = (
    "Accuracies are mean ± standard deviation across seeds, so the ± shows how much a "
    "single run varies, not how precisely the mean is known. The gap is train minus test "
    "accuracy, computed per run. Δ is the method's mean test accuracy minus the control's, "
    "in percentage points; its 95 % confidence interval (Welch) is for that difference of "
    "means, and an interval that contains 0 means the data cannot tell the two apart. With "
    "few seeds the intervals are wide and small real effects go undetected; p-values are "
    "not corrected for testing several methods, so at α = 0.05 about one comparison in "
    "twenty comes out significant by chance alone."
)


def _pct(value: float, signed: bool = False) -> str:
    if math.isnan(value):
        return "n/a"
    return f"{100 * value:+.2f}" if signed else f"{100 * value:.2f}"


def _mean_pm_std(mean: float, std: float, signed: bool = False) -> str:
    if math.isnan(mean):
        return "n/a"
    return f"{_pct(mean, signed)} ± {_pct(std)}"


def _p_text(p: float, alpha: float) -> str:
    if math.isnan(p):
        return "n/a"
    text = "< 0.001" if p < 0.001 else f"{p:.3f}"
    return f"{text} *" if p < alpha else text


def _row_cells(s: MethodSummary, alpha: float) -> list[str]:
    """One table row of strings, in the order of ``HEADERS``."""
    n = f"{s.n} (+{s.n_failed} failed)" if s.n_failed else str(s.n)
    vs, delta, p = s.vs_control, "—", "—"
    if s.is_control:
        delta, p = "reference", "—"
    elif vs is not None:
        ci = ("n/a" if math.isnan(vs.ci_low)
              else f"{_pct(vs.ci_low, True)}, {_pct(vs.ci_high, True)}")
        delta, p = f"{_pct(vs.diff, True)} [{ci}]", _p_text(vs.p_value, alpha)
    return [s.method, n, _mean_pm_std(s.test_mean, s.test_std),
            _mean_pm_std(s.train_mean, s.train_std),
            _mean_pm_std(s.gap_mean, s.gap_std, signed=True), delta, p]


def _markdown(rows: Sequence[Sequence[str]]) -> str:
    return markdown_table(HEADERS, rows, ["left"] + ["right"] * (len(HEADERS) - 1))


def _text(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(r[i]) for r in (HEADERS, *rows)) for i in range(len(HEADERS))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    return "\n".join([line(HEADERS), "  ".join("-" * w for w in widths), *map(line, rows)])


def _legend(alpha: float) -> str:
    return (f"Mean ± std over seeds; gap = train − test accuracy; Δ = test accuracy minus "
            f"control's with its {100 * CONFIDENCE:g} % CI; * p < {alpha:g} (two-sided Welch "
            f"t-test, uncorrected).")


def _p_clause(p_value: float) -> str:
    """'p = 0.031' or 'p < 0.001'."""
    text = _p_text(p_value, 0.0)
    return f"p {text}" if text.startswith("<") else f"p = {text}"


def significance_sentence(summaries: Sequence[MethodSummary], alpha: float = ALPHA) -> str:
    """A computed sentence on which methods differ from control, if any."""
    test = f"Welch t-test, α = {alpha:g}"
    compared = [s for s in summaries if s.vs_control is not None]
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
              f"are expected by chance alone." if len(testable) > 1 else "")
    return f"Significantly different from control ({test}): {listed}.{chance}{caveat}"


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
    welch_cells = ([] if vs is None else [vs.diff, vs.ci_low, vs.ci_high, vs.t, vs.df, vs.p_value])
    cells = [s.test_mean, s.test_std, s.train_mean, s.train_std, s.gap_mean, s.gap_std,
             *(welch_cells or [math.nan] * 6)]
    return [s.method, s.n, s.n_failed, *("" if math.isnan(c) else repr(c) for c in cells)]


def render_table(summaries: Sequence[MethodSummary], *, fmt: str = "markdown",
                 alpha: float = ALPHA) -> str:
    """The summary table, a one-line legend and the computed significance sentence.

    Args:
        fmt: "markdown" (a pipe table) or "text" (aligned columns for a terminal).
    """
    if fmt not in FORMATS:
        raise ValueError(f"fmt must be one of {FORMATS}, got {fmt!r}")
    v.check_number(alpha, "alpha", 0, 1, include_low=False, include_high=False,
                   expected="in (0, 1)")
    rows = [_row_cells(s, alpha) for s in summaries]
    table = _markdown(rows) if fmt == "markdown" else _text(rows)
    legend = _legend(alpha)
    return f"{table}\n\n{legend}\n\n{significance_sentence(summaries, alpha)}\n"


def render_rich(summaries: Sequence[MethodSummary], *, alpha: float = ALPHA) -> Table:
    """The summary table as a ``rich.table.Table``; significant rows green or red."""
    from rich.table import Table
    from rich.text import Text

    caption = Text(f"{_legend(alpha)}\n{significance_sentence(summaries, alpha)}")
    table = Table(title="Test accuracy over seeds", caption=caption, caption_justify="left")
    for index, header in enumerate(HEADERS):
        table.add_column(header, justify="left" if index == 0 else "right")
    for summary in summaries:
        vs = summary.vs_control
        style = "bold" if summary.is_control else None
        if vs is not None and vs.significant(alpha):
            style = "green" if vs.diff > 0 else "red"
        table.add_row(*map(Text, _row_cells(summary, alpha)), style=style)  # no markup
    return table


def write_summary_csv(path: Path, summaries: Sequence[MethodSummary]) -> Path:
    """Write one row per method atomically: fractions, full precision, empty if undefined."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    writer.writerows(_csv_row(s) for s in summaries)
    return _io.write_text(Path(path), buffer.getvalue())


def write_report(
    out_dir: Path, summaries: Sequence[MethodSummary], *, title: str, config: Mapping,
    figures: Mapping[str, Path], notes: Sequence[str] = (),
) -> Path:
    """Write ``out_dir/report.md`` atomically and return its path.

    ``figures`` maps a caption to a PNG path (absolute or relative to the working
    directory); links in the report are relative to ``out_dir``.
    """
    out_dir = Path(out_dir)
    parts = [f"# {title}\n", "## Results\n", render_table(summaries)]
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
