"""``convdrop sweep``: "where, and how strongly?", a grid over p, block size and placement.

The flags are those of ``compare`` (built from the spec) plus the ``[sweep]`` table's
(built from :class:`convdrop.lab.sweep.expand.SweepSettings`); everything, the drop budget of
every point included, is checked before anything is printed or written. ``--search
optuna`` searches the same table with Optuna instead (flags from
:class:`convdrop.lab.sweep.search.settings.SearchSettings`) and confirms the best
settings on fresh seeds; its storage is connected to before anything trains.
As ``compare``, it prints the control's regime first and honours ``--require-overfit``
(exit status 3).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Annotated

from pydantic import Field

from convdrop._extras import missing
from convdrop.cli import flags
from convdrop.cli.compare import EXIT_NOT_OVERFIT, overfit_refusal
from convdrop.errors import ArgumentError
from convdrop.lab.runs.executors import ExecutorSettings, chosen, open_executor
from convdrop.lab.runs.preflight import preflight
from convdrop.lab.spec.experiment import ExperimentSpec
from convdrop.lab.sweep.expand import DEFAULT_MAX_RUNS, Sweep, build_sweep
from convdrop.lab.sweep.presets import DEFAULT_PRESET, SWEEP_PRESETS
from convdrop.lab.sweep.search.settings import SearchSettings, shown_seeds, trial_seeds
from convdrop.lab.sweep.settings import SweepSettings

SWEEP_FIELDS = ("method", "p", "budget", "block_size", "placement", "schedule", "pairing",
                "control", "adaptive", "min_seeds")
EXPERIMENT_FIELDS = ("seeds", "workers", *flags.SHARED_FIELDS, *flags.REPORT_FIELDS)
SEARCH_FIELDS = ("trials", "sampler", "pruner", "storage", "study", "confirm", "trial_seeds",
                 "sampler_seed")


def add_cli(subparsers: argparse._SubParsersAction) -> None:
    """Register ``convdrop sweep``."""
    parser = subparsers.add_parser(
        "sweep", help="sweep p, block size and placement; dose-response curve and verdict",
        description="Train one method at every point of a grid over p (or drop budget), block "
        "size, placement and schedule, plus the control (p = 0), over several seeds; report "
        "the dose-response curve, a heatmap, the best setting, the settings within noise of "
        "it (Welch t-test, Holm) and a verdict. Same runner as compare: resume, --workers, "
        "--executor.",
        epilog="Each setting comes from, lowest first: the defaults shown, CPU-sized defaults "
        "on the bundled data (digits, synthetic) and fashion-mnist, the sweep preset, the "
        "--spec file ([experiment] and [sweep] tables), then these flags. Lists are "
        "comma-separated.",
    )
    parser.add_argument("--spec", type=Path, metavar="FILE",
                        help="TOML sweep file ([experiment], [sweep])")
    parser.add_argument("--preset", choices=sorted(SWEEP_PRESETS), metavar="NAME",
                        help=f"built-in sweep, one of {', '.join(SWEEP_PRESETS)} (default: "
                        f"the --spec file's sweep.preset, else {DEFAULT_PRESET} when no "
                        "[sweep] is given)")
    flags.add_field_flags(parser, SweepSettings, SWEEP_FIELDS)
    flags.add_field_flags(parser, ExperimentSpec, EXPERIMENT_FIELDS,
                          notes=flags.small_data_notes(
                              {name: experiment.get("on_digits", {})
                               for name, (_, experiment, _) in SWEEP_PRESETS.items()}))
    flags.add_executor_flags(parser)
    parser.add_argument("--search", choices=("grid", "optuna"), default="grid",
                        help="grid: every point of the table; optuna: the table read as "
                        "ranges, searched by Optuna, the best settings confirmed with the "
                        "control over --seeds fresh seeds (default: grid)")
    flags.add_field_flags(parser.add_argument_group("search (with --search optuna)"),
                          SearchSettings, SEARCH_FIELDS)
    parser.add_argument("--out", help="output folder (default results/sweep-<preset>; on "
                        "--executor ray, a folder every node sees at the same path)")
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

    from convdrop.lab.report import verdicts
    from convdrop.lab.sweep.report import verdict
    from convdrop.lab.sweep.runner import run_sweep

    where, fixed = flags.executor_from_args(args)
    search = _search_settings(args)
    experiment = {**flags.given(args, ExperimentSpec, EXPERIMENT_FIELDS), **fixed}
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
    chosen(where, spec, workers_flag=args.workers)  # the executor flags checked, one line each
    if search is not None:
        return _run_search(args, sweep, out, search, where)
    notes = preflight(spec, out, range(spec.seeds))  # device, data, models, runs in --out
    console = Console(width=None if sys.stdout.isatty() else 120)
    with open_executor(where, spec) as executor:

        def header() -> None:  # once --out's lock is held and its runs checked
            if executor.name == "ray":  # the cluster first: what the runs will share
                console.print(executor.describe(), markup=False)
            console.print(f"[bold]convdrop sweep[/bold] {spec.name}: {sweep.settings.method}, "
                          f"{len(spec.methods)} settings x {spec.seeds} seeds = "
                          f"{len(spec.methods) * spec.seeds} runs on {spec.data} / "
                          f"{spec.model}, {spec.epochs} epochs -> {out}")
            for note in notes:  # e.g. which --weights tensors stay fresh
                console.print(note, markup=False)

        report_path, stats = run_sweep(sweep, out, show_progress=not args.quiet,
                                       executor=executor, announce=header)
    control = stats.regimes.get("control")
    if control is not None:  # is there anything to regularize? before the verdict
        console.print(f"Regime: {verdicts.verdict(control)}.\n", markup=False)
    console.print(verdict(sweep, stats), markup=False)
    console.print(f"report: {report_path}")
    if spec.require_overfit and not (control and control.overfits):
        print(overfit_refusal("sweep", control and control.kind, report_path), file=sys.stderr)
        return EXIT_NOT_OVERFIT
    return 0


def _search_settings(args: argparse.Namespace) -> SearchSettings | None:
    """The search flags, None for a grid; a flag that does not fit is one line."""
    chosen = flags.given(args, SearchSettings, SEARCH_FIELDS)
    if args.search == "grid":
        if chosen:
            flag = "--" + next(iter(chosen)).replace("_", "-")
            raise ArgumentError(f"{flag} applies to --search optuna; add --search optuna, or "
                                "leave it out for a grid")
        return None
    if "trials" not in chosen:
        raise ArgumentError("--trials: required with --search optuna (the number of finished "
                            "trials the study should hold, e.g. --trials 30)")
    if missing(("optuna",)):
        raise ArgumentError("--search optuna needs the 'optuna' extra (optuna is not "
                            "installed): pip install 'convdrop[optuna]'")
    return SearchSettings(**chosen)


def _run_search(args: argparse.Namespace, sweep: Sweep, out: Path, settings: SearchSettings,
                where: ExecutorSettings) -> int:
    """``--search optuna``: every check (the storage reached) before anything is printed;
    trials and confirmation run on the chosen executor."""
    import optuna  # the optuna extra, checked by _search_settings
    from rich.console import Console

    from convdrop.lab.report import verdicts
    from convdrop.lab.sweep.report import verdict
    from convdrop.lab.sweep.search.report import curse_text
    from convdrop.lab.sweep.search.runner import open_search, run_search
    from convdrop.lab.sweep.search.space import space_of
    from convdrop.lab.sweep.search.study import check_url

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # one line per trial is ours
    if sweep.spec.require_overfit and not (settings.confirm and sweep.control):
        why = "--confirm 0 runs none" if not settings.confirm else "the sweep has no control"
        raise ArgumentError("--require-overfit: a search judges it on the confirmation's "
                            f"control runs, and {why}")
    if settings.storage:
        check_url(settings.storage)
    space_of(sweep.settings)
    spec = sweep.spec
    preflight(spec, out, trial_seeds(settings))
    opened = open_search(sweep, out, settings)
    console = Console(width=None if sys.stdout.isatty() else 120)

    def say(line: str) -> None:
        console.print(line, markup=False, highlight=False, soft_wrap=True)  # whole lines

    then = (f"then the best {settings.confirm} and the control over {spec.seeds} fresh seeds"
            if settings.confirm else "no confirmation (--confirm 0)")
    with open_executor(where, spec) as executor:
        if executor.name == "ray":  # the cluster first: what the trials will share
            say(executor.describe())
        say(f"convdrop sweep --search optuna {spec.name}: {sweep.settings.method}, trials "
            f"until the study holds {settings.trials} ({settings.sampler}, pruner "
            f"{settings.pruner}, up to {executor.slots} at once on {executor.name}) x "
            f"{settings.trial_seeds} seed(s), {then}, on {spec.data} / {spec.model}, "
            f"{spec.epochs} epochs; study {opened.study.study_name!r} in {opened.where} -> "
            f"{out}")
        report_path, confirmation = run_search(opened, show_progress=not args.quiet,
                                               executor=executor, say=say)
    control = confirmation.stats.regimes.get("control") if confirmation else None
    if control is not None:  # is there anything to regularize? before the verdict
        say(f"Regime: {verdicts.verdict(control)}.")
    if confirmation is not None:
        say(verdict(confirmation.sweep, confirmation.stats))
        say(curse_text(confirmation, shown_seeds(trial_seeds(settings))))
    say(f"report: {report_path}")
    if spec.require_overfit and not (control and control.overfits):
        print(overfit_refusal("sweep", control and control.kind, report_path), file=sys.stderr)
        return EXIT_NOT_OVERFIT
    return 0
