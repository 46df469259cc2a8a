"""Interrupted trials are run again: queued with the same parameters, so their runs resume.

A trial records the host and pid of the process that runs it. It can end three ways
without a value:

- interrupted (Ctrl-C, SIGTERM): Optuna marks it failed; the objective queues its
  parameters again before letting the interrupt through (:func:`requeue`);
- killed (SIGKILL, a crash): it stays RUNNING; the next search on the same host finds its
  process gone, fails it and queues it (:func:`requeue_dead`), before its first trial and
  after each one. Failing is a compare-and-set in both of Optuna's storages (a journal
  replays its log in one order, a database locks the row), so of several processes that
  find the same dead trial exactly one queues it;
- its machine died (a database study): Optuna's heartbeat fails it and
  ``RetryHeartbeatStaleTrialCallback`` queues it (see :mod:`convdrop.lab.sweep.search.study`).

A queued trial is the next one any process asks for. Its setting is the one that was
interrupted, so :func:`convdrop.lab.runs.run.execute` resumes that run from its last
checkpoint; finished trials are never touched.
"""

from __future__ import annotations

import os
import socket
from typing import Any

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import BaseStorage
from optuna.trial import TrialState

from convdrop.lab.runs.lock import alive

__all__ = ["HOST_ATTR", "PID_ATTR", "RETRY_ATTR", "claim", "requeue", "requeue_dead"]

HOST_ATTR, PID_ATTR, RETRY_ATTR = "host", "pid", "retry_of"


def claim(trial: optuna.Trial) -> None:
    """Record who runs ``trial``, so a later search can tell whether it still runs (the
    pid first: a trial is judged only once it has both)."""
    trial.set_user_attr(PID_ATTR, os.getpid())
    trial.set_user_attr(HOST_ATTR, socket.gethostname())


def requeue(study: optuna.Study, number: int, params: dict[str, Any]) -> None:
    """Queue trial ``number``'s parameters again, as a new trial that says which it redoes."""
    study.enqueue_trial(params, user_attrs={RETRY_ATTR: number}, skip_if_exists=False)


    return True


def requeue_dead(study: optuna.Study, storage: BaseStorage) -> list[int]:
    """Fail and queue again every RUNNING trial whose process on this host is gone;
    returns their numbers. Trials of other hosts are left to the heartbeat."""
    host = socket.gethostname()
    study_id = storage.get_study_id_from_name(study.study_name)
    requeued = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        attrs = trial.user_attrs
        if PID_ATTR not in attrs or attrs.get(HOST_ATTR) != host or alive(attrs[PID_ATTR]):
            continue  # not claimed yet, another host's, or still running
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
        try:
            storage.set_trial_state_values(trial_id, TrialState.FAIL)
        except UpdateFinishedTrialError:  # another process failed it first, and queues it
            continue
        requeue(study, trial.number, trial.params)
        requeued.append(trial.number)
    return requeued
