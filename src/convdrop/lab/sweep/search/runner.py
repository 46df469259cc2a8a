"""A search from start to report: open the study, add trials, confirm, write everything.

:func:`open_search` connects to the storage and opens the study (refusing one of another
search) before anything trains; :func:`run_search` then adds trials until the study holds
``--trials`` finished ones (so a rerun resumes, and several processes on one study stop
together), up to the executor's ``slots`` side by side, queues interrupted trials again,
confirms the best settings on fresh seeds on the same executor and writes, into
``--out``: ``report.md``, ``trials.csv``, ``confirmation.csv``, ``results.json`` and
``summary.csv`` (the confirmation runs), ``search.json``, ``config.json``,
``optimization_history.png``, ``param_importances.png`` and ``sweep_spec.toml`` (the
confirmed winner, which ``convdrop train --spec`` reads). The confirmation and the
report hold ``--out``'s lock, waiting for another process that holds it, so two
processes sharing ``--out`` confirm one after the other and the second trains nothing
the first already ran.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import BaseStorage
from optuna.trial import TrialState

from convdrop import _io
from convdrop.errors import OutputError, RunFolderError
from convdrop.lab.report import writer as report
from convdrop.lab.runs import lock, provenance
from convdrop.lab.runs.executors import Executor
from convdrop.lab.runs.workers import sigterm_as_interrupt
from convdrop.lab.sweep.expand import Probe, Sweep, budget_probe
from convdrop.lab.sweep.report import write_sweep_csv
from convdrop.lab.sweep.runner import SPEC_FILE
from convdrop.lab.sweep.search import plots
from convdrop.lab.sweep.search.confirm import Confirmation, candidates, run_confirmation
from convdrop.lab.sweep.search.objective import Search, make_objective
from convdrop.lab.sweep.search.report import winner_toml, write_search_report
from convdrop.lab.sweep.search.retry import requeue_dead
from convdrop.lab.sweep.search.settings import (
    SearchSettings,
    confirmation_seeds,
    shown_seeds,
    trial_seeds,
)
from convdrop.lab.sweep.search.space import space_of
from convdrop.lab.sweep.search.study import (
    JOURNAL_NAME,
    experiment_of,
    journal_storage,
    make_pruner,
    make_sampler,
    open_study,
    shown_url,
    url_storage,
)
from convdrop.lab.sweep.search.tables import trial_records
from convdrop.lab.sweep.stats import Interval, t_interval
from convdrop.lab.train.store import prepare_out

__all__ = ["Opened", "open_search", "run_search"]

LOCK_POLL_S = 2.0


@dataclass(frozen=True)
class Opened:
    """A search ready to run: its study, storage and where that is (password hidden)."""

    search: Search
    study: optuna.Study
    storage: BaseStorage
    where: str


def open_search(sweep: Sweep, out: Path, settings: SearchSettings, *,
                probe: Probe = budget_probe) -> Opened:
    """Check the table as a space, connect to the storage and open the study; every
    problem is one line, and a database is reached before anything trains."""
    space = space_of(sweep.settings)
    if settings.storage:
        storage: BaseStorage = url_storage(settings.storage)
        where = shown_url(settings.storage)
    else:
        out = prepare_out(out)
        storage, where = journal_storage(out), str(out / JOURNAL_NAME)
    study = open_study(storage, settings.study or sweep.spec.name, space,
                       experiment_of(sweep.spec, settings), where=where,
                       sampler=make_sampler(settings, space),
                       pruner=make_pruner(settings, sweep.spec.epochs))
    return Opened(Search(sweep, space, settings, Path(out), probe), study, storage, where)


@contextmanager
def _hold_waiting(out: Path, say: Callable[[str], None]) -> Iterator[None]:
    """``out``'s lock, waiting while another process holds it."""
    told = False
    while True:
        held = ExitStack()
        try:
            held.enter_context(lock.hold(out))
        except RunFolderError as err:
            if "in use" not in str(err):
                raise
            if not told:
                say(str(err).split("; wait")[0] + "; waiting until it is done")
                told = True
            time.sleep(LOCK_POLL_S)
            continue
        with held:
            yield
        return


COUNTED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)


def _room(study: optuna.Study, target: int) -> bool:
    """Whether the study holds fewer than ``target`` finished or running trials."""
    return len(study.get_trials(deepcopy=False, states=COUNTED)) < target


def _trials(opened: Opened, say: Callable[[str], None]) -> None:
    """Add trials until the study holds ``--trials`` finished (complete or pruned) or
    running ones, up to ``executor.slots`` at a time, so it ends with ``--trials`` finished;
    this process stops early once ``--trials`` of its own trials failed (a setting that
    diverges, a run folder another process holds)."""
    search, study = opened.search, opened.study
    target, failed = search.settings.trials, [0]

    def after(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        requeue_dead(study, opened.storage)
        steps = trial.intermediate_values
        if trial.state == TrialState.COMPLETE:
            how = f"{100 * trial.value:.2f} % val"
        elif trial.state == TrialState.PRUNED and steps:
            how = f"pruned after step {max(steps)} ({100 * steps[max(steps)]:.2f} % val)"
        else:
            how = trial.state.name.lower()
            failed[0] += int(trial.state == TrialState.FAIL)
        say(f"trial {trial.number}: {trial.user_attrs.get('setting', '?')}: {how}")

    requeued = requeue_dead(study, opened.storage)
    if requeued:
        say(f"queued again the interrupted trial(s) {requeued}")
    objective = make_objective(search)

    def one(asked: threading.Event) -> None:
        def started(trial: optuna.Trial) -> float:
            asked.set()  # in the storage now: the next _room counts it
            return objective(trial)

        try:
            study.optimize(started, n_trials=1, catch=(RunFolderError,), callbacks=[after],
                           gc_after_trial=False)
        finally:
            asked.set()

    def more() -> bool:
        return failed[0] < target and _room(study, target)

    if search.executor.slots == 1:  # in this thread: Ctrl-C reaches a local run directly
        while more():
            one(threading.Event())
        return
    _side_by_side(one, more, search.executor.slots, search.stop)


def _side_by_side(one: Callable[[threading.Event], None], more: Callable[[], bool],
                  slots: int, stop: threading.Event) -> None:
    """Run ``one(asked)`` in up to ``slots`` threads while ``more()``; each new trial waits
    until the previous one is in the storage (``asked``), so ``more`` counts it. An error
    or Ctrl-C sets ``stop``: the other trials end at their next progress call (within a
    second on the pool and on Ray), queue themselves again, and the error goes on up."""
    futures: set[Future] = set()
    with ThreadPoolExecutor(max_workers=slots, thread_name_prefix="convdrop-trial") as pool:
        try:
            while True:
                while len(futures) < slots and more():
                    asked = threading.Event()
                    futures.add(pool.submit(one, asked))
                    asked.wait()
                if not futures:
                    return
                done, futures = wait(futures, return_when=FIRST_COMPLETED)
                for future in done:
                    future.result()
        except BaseException:
            stop.set()
            wait(futures)
            raise


def run_search(opened: Opened, *, show_progress: bool = True, executor: Executor | None = None,
               say: Callable[[str], None] = lambda line: None) -> tuple[Path, Confirmation | None]:
    """Add the trials, confirm and write every output; returns the report and the
    confirmation (None with ``--confirm 0``). ``executor`` trains the trials' and the
    confirmation's runs (default: this process, one at a time)."""
    if executor is not None:
        opened = dataclasses.replace(opened, search=dataclasses.replace(opened.search,
                                                                        executor=executor))
    search, out = opened.search, prepare_out(opened.search.out)
    started = time.perf_counter()
    try:
        with sigterm_as_interrupt():
            _trials(opened, say)
            with _hold_waiting(out, say):
                trials = opened.study.get_trials(deepcopy=False)
                chosen = candidates(trials, search.settings.confirm)
                confirmation = run_confirmation(
                    search.sweep, chosen, out, confirmation_seeds(search.sweep.spec.seeds),
                    show_progress=show_progress, executor=search.executor) if chosen else None
                path = _write(opened, trials, confirmation, time.perf_counter() - started)
    except OutputError as err:
        raise OutputError(f"--out {out}: {err}") from err
    return path, confirmation


def _search_info(opened: Opened) -> dict[str, Any]:
    settings, sweep = opened.search.settings, opened.search.sweep
    confirm = shown_seeds(confirmation_seeds(sweep.spec.seeds))
    return {"study": opened.study.study_name, "storage": opened.where,
            "sampler": settings.sampler, "pruner": settings.pruner,
            "trials": f"until the study holds {settings.trials} finished",
            "trial seeds": shown_seeds(trial_seeds(settings)),
            "confirmation": f"the best {settings.confirm} settings and the control over seeds "
                            f"{confirm}" if settings.confirm else "none",
            "space": opened.search.space.describe()}


def _control_val(confirmation: Confirmation) -> Interval:
    return t_interval([r["val_acc"] for r in confirmation.results
                       if r["method"] == "control" and r["status"] == "ok"])


def _write(opened: Opened, trials: list, confirmation: Confirmation | None,
           wall: float) -> Path:
    sweep, out = opened.search.sweep, opened.search.out
    info = _search_info(opened)
    _io.write_json(out / "config.json", sweep.spec.model_dump())
    _io.write_json(out / "search.json", {**info, "sweep": sweep.settings.model_dump(),
                                         "search_settings": {**opened.search.settings
                                                             .model_dump(), "storage":
                                                             opened.where}})
    records = trial_records(trials)
    if records:
        _io.write_csv(out / "trials.csv", records, list(records[0]))
    control = (_control_val(confirmation) if confirmation and confirmation.sweep.control
               else None)
    figures = {"Search history and confirmation": plots.history(
        trials, confirmation.curses if confirmation else [], out / "optimization_history.png",
        control)}
    importance = plots.param_importances(opened.study)
    if importance:
        figures["Parameter importances"] = plots.importances(importance,
                                                             out / "param_importances.png")
    if confirmation is not None:
        _io.write_json(out / "results.json", confirmation.results)
        summaries = report.summarize(confirmation.results, control="control")
        report.write_summary_csv(out / "summary.csv", summaries)
        write_sweep_csv(out / "confirmation.csv", confirmation.sweep, confirmation.stats)
        toml = winner_toml(confirmation)
        if toml is not None:
            _io.write_text(out / SPEC_FILE, toml)
    spec = sweep.spec
    run_info = provenance.run_info(spec, wall, executor=opened.search.executor,
                                   results=confirmation.results if confirmation else ())
    finished = sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
    run_info["runs"] = (f"{finished} finished trials ({len(trials)} in the study) x "
                        f"{opened.search.settings.trial_seeds} seed(s), then "
                        f"{len(confirmation.sweep.points) if confirmation else 0} settings x "
                        f"{spec.seeds} fresh seeds")
    notes = [f"data: {spec.data}, model: {spec.model} {spec.model_options or ''}, "
             f"{spec.epochs} epochs, train_size: {spec.train_size or 'all'}, method: "
             f"{sweep.settings.method}"]
    if importance is None:
        notes.append("parameter importances need at least two finished trials whose "
                     "values differ; none drawn")
    return write_search_report(
        out, title=f"convdrop sweep --search optuna: {spec.name}", trials=trials,
        confirmation=confirmation, search=info, figures=figures,
        axes=sweep.settings.varied(), run_info=run_info, notes=notes)
