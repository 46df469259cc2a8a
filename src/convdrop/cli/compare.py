"""``convdrop compare``: the flags, and the glue to :func:`convdrop.lab.runs.runner.compare`.

Every check (flags, spec, device, data, models, placements, runs already in ``--out``)
runs before the first line is printed or the first file written. Failed runs (a
non-finite loss) still get their report, which lists each reason; the command then
exits with a one-line summary instead of 0. The control's regime
(:mod:`convdrop.lab.report.regime`) prints before the table; with ``--require-overfit`` a
control that does not overfit ends the command with status 3 once the report is written.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path

from convdrop.cli import flags
from convdrop.errors import RunsFailedError
from convdrop.lab.report.stats import MethodSummary
from convdrop.lab.runs import runner
from convdrop.lab.runs.executors import chosen, open_executor
from convdrop.lab.runs.preflight import preflight

FIELDS = (*flags.GRID_FIELDS, *flags.SHARED_FIELDS, *flags.REPORT_FIELDS)
EXIT_NOT_OVERFIT = 3  # --require-overfit and a control that does not overfit


def add_cli(subparsers: argparse._SubParsersAction) -> None:
    """Register ``convdrop compare``."""
    parser = subparsers.add_parser(
        "compare", help="compare regularizers over seeds and write a report",
        description="Train every method of a preset or spec over several seeds and report "
        "mean ± std, the generalization gap and the difference from control (Welch t-test).",
        epilog=flags.LAYERS_EPILOG,
    )
    flags.add_spec_flags(parser, FIELDS)
    flags.add_executor_flags(parser)
    parser.add_argument("--out", help="output folder (default: results/<preset>; on "
                        "--executor ray, a folder every node sees at the same path)")
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


def overfit_refusal(command: str, kind: str | None, report_path: Path) -> str:
    """The line ``--require-overfit`` ends a study with, before exiting with status 3."""
    what = f"is {kind!r}" if kind else "was not diagnosed"
    return (f"convdrop {command}: --require-overfit: the control's regime {what}, not "
            f"'overfits'; {report_path} says why (exit status {EXIT_NOT_OVERFIT})")


def _width() -> int:
    """The terminal's columns (80 when it cannot tell); 120 when writing to a file or pipe."""
    return shutil.get_terminal_size((80, 24)).columns if sys.stdout.isatty() else 120


def run(args: argparse.Namespace) -> int:
    """Entry point of ``convdrop compare``."""
    # the report (scipy) on first use, so `convdrop --help` stays fast
    from convdrop.lab.report import verdicts
    from convdrop.lab.report import writer as report

    where, fixed = flags.executor_from_args(args)
    spec = flags.spec_from_args(args, FIELDS, **fixed)
    out = Path(args.out) if args.out else Path("results") / spec.name
    # every check before any output; runs to --restart are deleted, not checked
    chosen(where, spec, workers_flag=args.workers)
    notes = preflight(spec, out, [] if args.restart else range(spec.seeds))
    with open_executor(where, spec) as executor:

        def header() -> None:  # once --out's lock is held and its runs checked
            if executor.name == "ray":  # the cluster first: what the runs will share
                print(executor.describe(), flush=True)
            print(f"convdrop compare {spec.name}: {len(spec.methods)} methods x {spec.seeds} "
                  f"seeds on {spec.data} / {spec.model}, {spec.epochs} epochs -> {out}",
                  flush=True)
            for note in notes:  # e.g. which --weights tensors stay fresh
                print(note, flush=True)

        report_path, summaries = runner.compare(spec, out, show_progress=not args.quiet,
                                                restart=args.restart, executor=executor,
                                                announce=header)
    control = runner.regimes(out, summaries).get("control")
    if control is not None:  # is there anything to regularize? before the numbers
        print(textwrap.fill(f"Regime: {verdicts.verdict(control)}.", max(_width(), 40)) + "\n")
    print(report.render_table(summaries, fmt="text", width=_width()))
    print(f"report: {report_path}")
    failed = failure_summary(summaries, report_path)
    if failed:
        raise RunsFailedError(failed)
    if spec.require_overfit and not (control and control.overfits):
        print(overfit_refusal("compare", control and control.kind, report_path),
              file=sys.stderr)
        return EXIT_NOT_OVERFIT
    return 0
