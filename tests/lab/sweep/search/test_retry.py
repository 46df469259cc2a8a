"""Interrupted trials are queued again exactly once, on real Optuna journal storages."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import optuna
import pytest
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import TrialState

from convdrop.lab.sweep.search.retry import RETRY_ATTR, claim, requeue, requeue_dead
from convdrop.lab.sweep.search.study import journal_storage


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def _running(study: optuna.Study, host: str, pid: int) -> int:
    trial = study.ask()
    trial.suggest_float("p", 0.01, 0.5, log=True)
    trial.set_user_attr("host", host)
    trial.set_user_attr("pid", pid)
    return trial.number


@pytest.fixture
def study(tmp_path):
    storage = journal_storage(tmp_path)
    return optuna.create_study(study_name="s", storage=storage, direction="maximize",
                               sampler=optuna.samplers.RandomSampler(seed=0)), storage


def test_a_dead_trial_of_this_host_is_failed_and_queued_once(study):
    study, storage = study
    host = socket.gethostname()
    finished = study.ask()
    finished.suggest_float("p", 0.01, 0.5, log=True)
    study.tell(finished, 0.9)
    dead = _running(study, host, _dead_pid())
    alive = _running(study, host, os.getpid())
    elsewhere = _running(study, "another-host", _dead_pid())
    params = study.trials[dead].params
    assert requeue_dead(study, storage) == [dead]
    assert requeue_dead(study, storage) == []  # nothing queued twice
    states = {t.number: t.state for t in study.trials}
    assert states[finished.number] == TrialState.COMPLETE and states[dead] == TrialState.FAIL
    assert states[alive] == TrialState.RUNNING and states[elsewhere] == TrialState.RUNNING
    waiting = study.get_trials(states=(TrialState.WAITING,))
    assert [t.user_attrs[RETRY_ATTR] for t in waiting] == [dead]
    again = study.ask()  # the queued trial comes first, with the interrupted parameters
    assert again.number == waiting[0].number
    assert again.suggest_float("p", 0.01, 0.5, log=True) == params["p"]
    assert study.trials[finished.number].value == 0.9  # the finished one is untouched


def test_failing_a_trial_is_a_compare_and_set_across_processes(study, tmp_path):
    study, first = study
    number = _running(study, "h", 1)
    second = journal_storage(tmp_path)  # what another process opens: the same file
    study_id = first.get_study_id_from_name("s")
    trial_id = first.get_trial_id_from_study_id_trial_number(study_id, number)
    first.set_trial_state_values(trial_id, TrialState.FAIL)
    with pytest.raises(UpdateFinishedTrialError):
        second.set_trial_state_values(trial_id, TrialState.FAIL)


def test_claim_and_requeue_record_who_and_what(study):
    study, _ = study
    trial = study.ask()
    trial.suggest_float("p", 0.01, 0.5, log=True)
    claim(trial)
    assert study.trials[trial.number].user_attrs == {"host": socket.gethostname(),
                                                     "pid": os.getpid()}
    requeue(study, trial.number, trial.params)
    queued = study.get_trials(states=(TrialState.WAITING,))
    assert queued[0].user_attrs == {RETRY_ATTR: trial.number}
    assert study.ask().suggest_float("p", 0.01, 0.5, log=True) == trial.params["p"]
