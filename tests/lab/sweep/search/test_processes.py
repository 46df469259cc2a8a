"""Real processes on one journal file: two searches fill the study to ``--trials``, none
duplicated or lost, and a rerun adds none; a search killed in the middle of a trial
resumes, keeping its finished trials and running the interrupted one again from its
checkpoint. Tiny synthetic runs, the real
``convdrop sweep --search optuna`` command, real Optuna."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from convdrop.lab.sweep.search.retry import PID_ATTR, RETRY_ATTR
from convdrop.lab.sweep.search.study import journal_storage

from conftest import wait_until_gone

TINY = ["--data", "synthetic", "--train-size", "24", "--seeds", "1", "--batch-size", "12",
        "--image-size", "16", "--model-option", "width=4", "--workers", "1", "--quiet",
        "--p", "0.05,0.3", "--block-size", "1,3", "--search", "optuna", "--sampler", "random",
        "--pruner", "none", "--confirm", "0"]
DEADLINE_S = 600  # generous: the machine may be shared; the test ends as soon as it can


def _start(out: Path, *flags: str) -> subprocess.Popen:
    """The search in a session of its own, so every process it starts can be found."""
    return subprocess.Popen([sys.executable, "-m", "convdrop", "sweep", *TINY, *flags,
                             "--out", str(out)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def _finish(process: subprocess.Popen) -> None:
    _, err = process.communicate(timeout=DEADLINE_S)
    assert process.returncode == 0, err


def _trials(out: Path) -> list[optuna.trial.FrozenTrial]:
    study = optuna.load_study(study_name="sweep", storage=journal_storage(out))
    return study.get_trials(deepcopy=False)


def test_two_processes_on_one_journal_fill_the_study_and_a_rerun_adds_none(tmp_path):
    first = _start(tmp_path, "--epochs", "1", "--trials", "6", "--sampler-seed", "1")
    second = _start(tmp_path, "--epochs", "1", "--trials", "6", "--sampler-seed", "2")
    _finish(first)
    _finish(second)
    trials = _trials(tmp_path)
    # both stop once the study holds 6; a trial each asked for at the same moment may add one
    assert len(trials) in (6, 7)
    assert sorted(t.number for t in trials) == list(range(len(trials)))  # none lost
    assert all(t.state == TrialState.COMPLETE for t in trials)
    assert {t.user_attrs[PID_ATTR] for t in trials} <= {first.pid, second.pid}
    for trial in trials:  # and its run is on disk, trained once
        run = tmp_path / "runs" / trial.user_attrs["setting"] / "seed0"
        assert (run / "result.json").is_file()

    _finish(_start(tmp_path, "--epochs", "1", "--trials", "6", "--sampler-seed", "3"))
    assert [t.number for t in _trials(tmp_path)] == [t.number for t in trials]  # resumed: done
    _finish(_start(tmp_path, "--epochs", "1", "--trials", str(len(trials) + 2),
                   "--sampler-seed", "4"))
    assert len(_trials(tmp_path)) == len(trials) + 2  # a larger --trials adds the difference


def _interrupted(out: Path) -> tuple[int, str] | None:
    """(number, setting) of a running trial whose run has an epoch on disk and no result,
    once two trials have finished."""
    if not (out / "optuna.journal").is_file():
        return None
    try:
        trials = _trials(out)
    except KeyError:  # the study is not created yet
        return None
    if sum(t.state == TrialState.COMPLETE for t in trials) < 2:
        return None
    for trial in trials:
        name = trial.user_attrs.get("setting")
        if trial.state != TrialState.RUNNING or name is None:
            continue
        run = out / "runs" / name / "seed0"
        if (run / "checkpoint.pt").is_file() and not (run / "result.json").exists():
            return trial.number, name
    return None


@pytest.mark.parametrize("how", [  # Ctrl-C's path also has a fast test in test_objective.py
    signal.SIGKILL, pytest.param(signal.SIGTERM, marks=pytest.mark.slow)],
    ids=["killed", "terminated"])
def test_an_interrupted_search_resumes_and_keeps_its_finished_trials(tmp_path, how):
    search = _start(tmp_path, "--epochs", "6", "--trials", "50", "--sampler-seed", "3")
    deadline = time.monotonic() + DEADLINE_S
    found = None
    while found is None and search.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
        found = _interrupted(tmp_path)
    assert found is not None, "no trial was caught running"
    os.kill(search.pid, how)
    search.communicate(timeout=DEADLINE_S)
    number, name = found
    before = {t.number: (t.value, t.user_attrs["setting"]) for t in _trials(tmp_path)
              if t.state == TrialState.COMPLETE}
    metrics = (tmp_path / "runs" / name / "seed0" / "metrics.csv").read_text().splitlines()
    assert len(metrics) >= 2  # header and at least one epoch, kept for the resume

    _finish(_start(tmp_path, "--epochs", "6", "--trials", str(len(before) + 1),
                   "--sampler-seed", "4"))  # the study's finished trials, and one more
    trials = {t.number: t for t in _trials(tmp_path)}
    after = {n: (t.value, t.user_attrs["setting"]) for n, t in trials.items()
             if t.state == TrialState.COMPLETE}
    assert {n: after[n] for n in before} == before  # finished trials kept as they were
    assert trials[number].state == TrialState.FAIL  # the interrupted one, marked
    (retry,) = [t for t in trials.values() if t.user_attrs.get(RETRY_ATTR) == number]
    assert retry.state == TrialState.COMPLETE and retry.user_attrs["setting"] == name
    assert set(after) == set(before) | {retry.number}  # the rerun's one trial was the retry
    resumed = (tmp_path / "runs" / name / "seed0" / "metrics.csv").read_text().splitlines()
    assert resumed[:len(metrics)] == metrics and len(resumed) == 7  # continued, not redone


def _running_with_checkpoints(out: Path) -> dict[int, str]:
    """Running trials (number -> setting) whose run has an epoch on disk and no result."""
    try:
        trials = _trials(out) if (out / "optuna.journal").is_file() else []
    except KeyError:
        return {}
    found = {}
    for trial in trials:
        name = trial.user_attrs.get("setting")
        run = out / "runs" / str(name) / "seed0"
        if trial.state == TrialState.RUNNING and name and (run / "checkpoint.pt").is_file() \
                and not (run / "result.json").exists():
            found[trial.number] = name
    return found


def test_the_pool_runs_trials_side_by_side_and_ctrl_c_queues_each_again(tmp_path):
    flags = ("--epochs", "40", "--workers", "2", "--executor", "pool")
    search = _start(tmp_path, *flags, "--trials", "30", "--sampler-seed", "5")
    deadline = time.monotonic() + DEADLINE_S
    both: dict[int, str] = {}
    while len(both) < 2 and search.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
        both = _running_with_checkpoints(tmp_path)
    assert len(both) == 2, "two trials were never seen training at once"
    metrics = {n: (tmp_path / "runs" / name / "seed0" / "metrics.csv").read_text().splitlines()
               for n, name in both.items()}
    os.kill(search.pid, signal.SIGINT)
    _, err = search.communicate(timeout=DEADLINE_S)
    assert search.returncode == 130, err
    assert wait_until_gone(search.pid) == []  # no worker process left behind

    trials = {t.number: t for t in _trials(tmp_path)}
    retries = {t.user_attrs.get(RETRY_ATTR): t for t in trials.values()
               if t.state == TrialState.WAITING}
    for number in both:  # each interrupted trial failed and was queued again
        assert trials[number].state == TrialState.FAIL and number in retries
    finished = sum(t.state == TrialState.COMPLETE for t in trials.values())

    _finish(_start(tmp_path, *flags, "--trials", str(finished + 2), "--sampler-seed", "6"))
    after = {t.number: t for t in _trials(tmp_path)}
    assert sum(t.state == TrialState.COMPLETE for t in after.values()) == finished + 2
    for number, name in both.items():
        (retry,) = [t for t in after.values() if t.user_attrs.get(RETRY_ATTR) == number]
        assert retry.state == TrialState.COMPLETE and retry.user_attrs["setting"] == name
        resumed = (tmp_path / "runs" / name / "seed0" / "metrics.csv").read_text().splitlines()
        assert resumed[:len(metrics[number])] == metrics[number] and len(resumed) == 41
