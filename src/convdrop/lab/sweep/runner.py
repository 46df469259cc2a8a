"""Running a sweep: the expanded spec through the grid runner, then its statistics and report.

The runs are those of :func:`convdrop.lab.runs.runner.run_grid`, so seeds, resume (a rerun
trains nothing that finished), the executor (``--workers``, ``--executor``) and the run folders
(``OUT/runs/<setting>/seed<k>/``) are the same as ``convdrop compare``'s, and
``convdrop train --spec`` runs of a generated setting land in the same place. It writes
``config.json``, ``sweep.json`` (settings and points), ``sweep_spec.toml`` (the expanded
spec, which ``convdrop train --spec`` reads, so a setting can run under torchrun into the
same folder), ``results.json``,
``summary.csv``, ``sweep.csv``, ``dose_response.png``, ``heatmap.png`` (when there is
more than one line) and ``report.md``, which opens with the regime of the control.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path

from convdrop import _io
from convdrop.errors import OutputError
from convdrop.lab.report import writer as report
from convdrop.lab.runs import lock, provenance, runner
from convdrop.lab.runs.executors import Executor, default_executor
from convdrop.lab.runs.run import check_run
from convdrop.lab.runs.workers import sigterm_as_interrupt
from convdrop.lab.spec.to_toml import spec_to_toml
from convdrop.lab.sweep.expand import Sweep
from convdrop.lab.sweep.plots import dose_response, heatmap
from convdrop.lab.sweep.report import write_sweep_csv, write_sweep_report
from convdrop.lab.sweep.stats import SweepStats, analyse
from convdrop.lab.train.store import prepare_out

__all__ = ["SPEC_FILE", "run_adaptive", "run_sweep", "rungs", "write_sweep_outputs"]

SPEC_FILE = "sweep_spec.toml"
TOML_HEADER = ("The expanded spec of a convdrop sweep: one method per setting. Train one setting\n"
               "alone (e.g. under torchrun) into the sweep's folder with\n"
               "  convdrop train --spec OUT/sweep_spec.toml --method NAME --seed K --out OUT")


def run_sweep(sweep: Sweep, out: Path, *, show_progress: bool = True,
              executor: Executor | None = None, announce: Callable[[], None] | None = None
              ) -> tuple[Path, SweepStats]:
    """Run (or resume) every point over its seeds and write every output.

    As ``compare``: ``out``'s lock is held, every run already there is read back and
    checked before anything is written (then ``announce()``, the header), a failed write
    names ``--out``, and ``executor`` runs the runs (default: the pool when
    ``workers > 1``, else this process).
    """
    executor = executor or default_executor(sweep.spec)
    out = prepare_out(out)
    try:
        with sigterm_as_interrupt(), lock.hold(out):
            for method, seed in runner.grid(sweep.spec):
                check_run(sweep.spec, method, seed, out)
            if announce is not None:
                announce()
            _io.write_json(out / "config.json", sweep.spec.model_dump())
            _io.write_json(out / "sweep.json", sweep.to_json())
            _io.write_text(out / SPEC_FILE, spec_to_toml(sweep.spec, header=TOML_HEADER))
            started = time.perf_counter()
            if sweep.settings.adaptive:
                results, rounds = run_adaptive(sweep, out, show_progress=show_progress,
                                               executor=executor)
            else:
                results = runner.run_grid(sweep.spec, out, show_progress=show_progress,
                                          executor=executor)
                rounds = []
            return write_sweep_outputs(sweep, out, results, rounds=rounds, executor=executor,
                                       wall_seconds=time.perf_counter() - started)
    except OutputError as err:
        raise OutputError(f"--out {out}: {err}") from err


def rungs(min_seeds: int, seeds: int) -> list[int]:
    """Seeds per point after each adaptive round: min_seeds, doubling, ending at seeds."""
    counts = [min(min_seeds, seeds)]
    while counts[-1] < seeds:
        counts.append(min(2 * counts[-1], seeds))
    return counts


def run_adaptive(sweep: Sweep, out: Path, *, show_progress: bool = True,
                 executor: Executor | None = None
                 ) -> tuple[list[dict], list[tuple[int, list[str]]]]:
    """Successive halving over seeds: each round runs the points still within noise of the
    best (and the control) up to the round's seed count.

    The decisions are recomputed from the finished runs, so a rerun replays the same rounds
    and trains only what is missing. Returns the results (points in sweep order, seeds
    ascending) and, per round, its seed count and the points it ran.
    """
    spec = sweep.spec
    done: dict[tuple[str, int], dict] = {}
    active = list(spec.methods)
    rounds = []
    for seeds in rungs(sweep.settings.min_seeds, spec.seeds):
        part = spec.model_copy(update={"methods": active, "seeds": seeds})
        for result in runner.run_grid(part, out, show_progress=show_progress,
                                      executor=executor):
            done[(result["method"], result["seed"])] = result
        rounds.append((seeds, active))
        ordered = [done[key] for key in sorted(done, key=lambda k: (spec.methods.index(k[0]),
                                                                     k[1]))]
        stats = analyse(report.summarize(ordered, control="control"),
                        control="control" if sweep.control else None)
        active = [m for m in spec.methods
                  if (m == "control" and sweep.control) or stats.point(m).within_noise]
    return ordered, rounds


def write_sweep_outputs(sweep: Sweep, out: Path, results: list[dict], *,
                        rounds: list[tuple[int, list[str]]] = (),
                        wall_seconds: float | None = None, executor: Executor | None = None
                        ) -> tuple[Path, SweepStats]:
    """results.json, summary.csv, sweep.csv, the figures and report.md from ``results``."""
    _io.write_json(out / "results.json", results)
    summaries = report.summarize(results, control="control")
    report.write_summary_csv(out / "summary.csv", summaries)
    stats = dataclasses.replace(analyse(summaries, control="control" if sweep.control else None),
                                regimes=runner.regimes(out, summaries))
    write_sweep_csv(out / "sweep.csv", sweep, stats)
    by_budget = sweep.settings.by_budget
    x_label = "drop probability p (solved per placement)" if by_budget else \
        "drop probability p"
    rows = [(p, stats.point(p.name)) for p in sweep.points
            if not p.is_control and stats.point(p.name).test.n > 0]
    control = stats.point("control") if sweep.control else None
    figures = {}
    if rows:
        figures["Dose-response curve"] = dose_response(
            rows, control if control and control.test.n else None, out / "dose_response.png",
            x_label=x_label, log_p=by_budget)
    if len({p.series_label for p, _ in rows}) > 1:
        figures["Heatmap"] = heatmap(rows, out / "heatmap.png",
                                     x_label="target drop budget" if by_budget else x_label,
                                     best=stats.best, control=control)
    failures = [[s.method, str(seed), " ".join(error.split())[:300]]
                for s in summaries for seed, error in s.failures]
    spec = sweep.spec
    notes = [f"data: {spec.data}, model: {spec.model} {spec.model_options or ''}, "
             f"{spec.epochs} epochs, {spec.seeds} seeds, train_size: "
             f"{spec.train_size or 'all'}, method: {sweep.settings.method}",
             *provenance.weights_notes(spec, results)]
    notes += [f"adaptive round {i + 1}: {len(names)} settings up to {seeds} seeds"
              + (f" ({', '.join(names)})" if i else "")
              for i, (seeds, names) in enumerate(rounds)]
    path = write_sweep_report(out, sweep, stats, title=f"convdrop sweep: {spec.name}",
                              figures=figures, failures=failures, notes=notes,
                              run_info=provenance.run_info(spec, wall_seconds,
                                                           executor=executor, results=results))
    return path, stats
