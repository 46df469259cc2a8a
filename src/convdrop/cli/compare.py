"""``convdrop compare``: the flags, and the glue to :func:`convdrop.lab.runs.runner.compare`.

Every check (flags, spec, device, data, models, placements, runs already in ``--out``)
runs before the first line is printed or the first file written. Failed runs (a
non-finite loss) still get their report, which lists each reason; the command then
exits with a one-line summary instead of 0.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from convdrop.cli import flags
from convdrop.errors import RunsFailedError
from convdrop.lab.report.stats import MethodSummary
from convdrop.lab.runs import runner
from convdrop.lab.runs.preflight import preflight

FIELDS = (*flags.GRID_FIELDS, *flags.SHARED_FIELDS)


def add_cli(subparsers: argparse._SubParsersAction) -> None:
    """Register ``convdrop compare``."""
    parser = subparsers.add_parser(
        "compare", help="compare regularizers over seeds and write a report",
        description="Train every method of a preset or spec over several seeds and report "
        "mean ± std, the generalization gap and the difference from control (Welch t-test).",
        epilog=flags.LAYERS_EPILOG,
    )
    flags.add_spec_flags(parser, FIELDS)
    parser.add_argument("--out", help="output folder (default: results/<preset>)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--restart", action="append", default=[], metavar="RUN",
                        help="delete run RUN (METHOD/seedS, or METHOD for all its seeds) and "
                        "train it from scratch (repeatable)")
    parser.set_defaults(func=run)


def failure_summary(summaries: Sequence[MethodSummary], report_path: Path) -> str | None:
    """One line on the failed runs and the first reason, or None when every run finished."""
    failures = [(s.method, seed, error) for s in summaries for seed, error in s.failures]
    if not failures:
        return None
    total = sum(s.n + s.n_failed for s in summaries)
    method, seed, error = failures[0]
    reason = " ".join(error.split())
    reason = reason if len(reason) <= 160 else reason[:157] + "..."
    return (f"{len(failures)} of {total} runs failed (first: {method} seed {seed}: {reason}); "
            f"{report_path} lists every failure and its reason")


def _width() -> int:
    """The terminal's columns (80 when it cannot tell); 120 when writing to a file or pipe."""
    return shutil.get_terminal_size((80, 24)).columns if sys.stdout.isatty() else 120


def run(args: argparse.Namespace) -> int:
    """Entry point of ``convdrop compare``."""
    # the report (scipy) on first use, so `convdrop --help` stays fast
    from convdrop.lab.report import writer as report

    spec = flags.spec_from_args(args, FIELDS)
    out = Path(args.out) if args.out else Path("results") / spec.name
    # every check before any output; runs to --restart are deleted, not checked
    preflight(spec, out, [] if args.restart else range(spec.seeds))

    def header() -> None:  # once --out's lock is held and its runs checked
        print(f"convdrop compare {spec.name}: {len(spec.methods)} methods x {spec.seeds} seeds "
              f"on {spec.data} / {spec.model}, {spec.epochs} epochs -> {out}", flush=True)

    report_path, summaries = runner.compare(spec, out, show_progress=not args.quiet,
                                            restart=args.restart, announce=header)
    print(report.render_table(summaries, fmt="text", width=_width()))
    print(f"report: {report_path}")
    failed = failure_summary(summaries, report_path)
    if failed:
        raise RunsFailedError(failed)
    return 0
