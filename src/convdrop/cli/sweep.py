"""``convdrop sweep``: "where, and how strongly?", a grid over p, block size and placement.

The flags are those of ``compare`` (built from the spec) plus the ``[sweep]`` table's
(built from :class:`convdrop.lab.sweep.expand.SweepSettings`); everything, the drop budget of
every point included, is checked before anything is printed or written.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Annotated

from pydantic import Field

from convdrop.cli import flags
from convdrop.lab.runs.preflight import preflight
from convdrop.lab.spec.experiment import ExperimentSpec
from convdrop.lab.sweep.expand import DEFAULT_MAX_RUNS, build_sweep
from convdrop.lab.sweep.presets import DEFAULT_PRESET, SWEEP_PRESETS
from convdrop.lab.sweep.settings import SweepSettings

SWEEP_FIELDS = ("method", "p", "budget", "block_size", "placement", "schedule", "pairing",
                "control", "adaptive", "min_seeds")
EXPERIMENT_FIELDS = ("seeds", "workers", *flags.SHARED_FIELDS)


def add_cli(subparsers: argparse._SubParsersAction) -> None:
    """Register ``convdrop sweep``."""
    parser = subparsers.add_parser(
        "sweep", help="sweep p, block size and placement; dose-response curve and verdict",
        description="Train one method at every point of a grid over p (or drop budget), block "
        "size, placement and schedule, plus the control (p = 0), over several seeds; report "
        "the dose-response curve, a heatmap, the best setting, the settings within noise of "
        "it (Welch t-test, Holm) and a verdict. Same runner as compare: resume, --workers.",
        epilog="Each setting comes from, lowest first: the defaults shown, CPU-sized defaults "
        "on the bundled data (digits, synthetic), the sweep preset, the --spec file "
        "([experiment] and [sweep] tables), then these flags. Lists are comma-separated.",
    )
    parser.add_argument("--spec", type=Path, metavar="FILE",
                        help="TOML sweep file ([experiment], [sweep])")
    parser.add_argument("--preset", choices=sorted(SWEEP_PRESETS), metavar="NAME",
                        help=f"built-in sweep, one of {', '.join(SWEEP_PRESETS)} (default: "
                        f"the --spec file's sweep.preset, else {DEFAULT_PRESET} when no "
                        "[sweep] is given)")
    flags.add_field_flags(parser, SweepSettings, SWEEP_FIELDS)
    flags.add_field_flags(parser, ExperimentSpec, EXPERIMENT_FIELDS,
                          notes=flags.small_data_notes())
    parser.add_argument("--out", help="output folder (default results/sweep-<preset>)")
    parser.add_argument("--max-runs", type=flags.flag_type(Annotated[int, Field(ge=1)]),
                        default=DEFAULT_MAX_RUNS, metavar="N",
                        help="refuse a sweep of more runs (settings x seeds) than this, "
                        f"before expanding it (default: {DEFAULT_MAX_RUNS:,})")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Entry point of ``convdrop sweep``."""
    # rich and the statistics (scipy) on first use, so `convdrop --help` stays fast
    from rich.console import Console

    from convdrop.lab.sweep.report import verdict
    from convdrop.lab.sweep.runner import run_sweep

    experiment = flags.given(args, ExperimentSpec, EXPERIMENT_FIELDS)
    options = experiment.pop("model_options", None)
    sweep_flags = flags.given(args, SweepSettings, SWEEP_FIELDS)
    sweep = build_sweep(preset=args.preset, spec_file=args.spec, overrides=experiment,
                        sweep_overrides=sweep_flags, max_runs=args.max_runs)
    if options:  # --model-option pairs add to the options the layers beneath chose
        merged = {**sweep.spec.model_options, **options}
        sweep = build_sweep(preset=args.preset, spec_file=args.spec, sweep_overrides=sweep_flags,
                            overrides={**experiment, "model_options": merged},
                            max_runs=args.max_runs)
    spec = sweep.spec
    out = Path(args.out) if args.out else Path("results") / f"sweep-{spec.name}"
    preflight(spec, out, range(spec.seeds))  # device, data, models, runs already in --out
    console = Console(width=None if sys.stdout.isatty() else 120)

    def header() -> None:  # once --out's lock is held and its runs checked
        console.print(f"[bold]convdrop sweep[/bold] {spec.name}: {sweep.settings.method}, "
                      f"{len(spec.methods)} settings x {spec.seeds} seeds = "
                      f"{len(spec.methods) * spec.seeds} runs on {spec.data} / "
                      f"{spec.model}, {spec.epochs} epochs -> {out}")

    report_path, stats = run_sweep(sweep, out, show_progress=not args.quiet, announce=header)
    console.print(verdict(sweep, stats), markup=False)
    console.print(f"report: {report_path}")
    return 0
