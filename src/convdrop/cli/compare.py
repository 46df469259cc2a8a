"""``convdrop compare``: the flags, and the glue to :func:`convdrop.lab.runner.compare`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from convdrop.cli import flags
from convdrop.lab import runner


def add_cli(subparsers: argparse._SubParsersAction) -> None:
    """Register ``convdrop compare``."""
    parser = subparsers.add_parser(
        "compare", help="compare regularizers over seeds and write a report",
        description="Train every method of a preset or spec over several seeds and report "
        "mean ± std, the generalization gap and the difference from control (Welch t-test).",
        epilog=flags.LAYERS_EPILOG,
    )
    flags.add_spec_flags(parser, (*flags.GRID_FIELDS, *flags.SHARED_FIELDS))
    parser.add_argument("--out", help="output folder (default results/<preset>)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--restart", action="append", default=[], metavar="RUN",
                        help="delete run RUN (METHOD/seedS, or METHOD for all its seeds) and "
                        "train it from scratch (repeatable)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Entry point of ``convdrop compare``."""
    # rich and the report (scipy) on first use, so `convdrop --help` stays fast
    from rich.console import Console

    from convdrop.lab import report

    spec = flags.spec_from_args(args, (*flags.GRID_FIELDS, *flags.SHARED_FIELDS))
    out = Path(args.out) if args.out else Path("results") / spec.name
    console = Console(width=None if sys.stdout.isatty() else 120)
    console.print(f"[bold]convdrop compare[/bold] {spec.name}: {len(spec.methods)} methods x "
                  f"{spec.seeds} seeds on {spec.data} / {spec.model}, {spec.epochs} epochs "
                  f"-> {out}")
    report_path, summaries = runner.compare(spec, out, show_progress=not args.quiet,
                                            restart=args.restart)
    console.print(report.render_rich(summaries))
    console.print(f"report: {report_path}")
    return 0
