"""convdrop.lab.runs.workers: results in order, errors carried over, no orphan processes."""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from convdrop.errors import SpecError
from convdrop.lab.runs.workers import WorkerDied, run_jobs

from conftest import session_processes, wait_until_gone


def square(value: int, *, report) -> int:
    report(1)
    if value == -1:
        raise SpecError("experiment.x: bad (got -1)")
    if value == -2:
        raise ZeroDivisionError("a bug")
    if value == -3:
        os.kill(os.getpid(), signal.SIGKILL)  # as the kernel's OOM killer would
    return value * value


def _run(values: list[int], processes: int = 1) -> tuple[list[int], list[int]]:
    events: list[int] = []
    results = run_jobs(square, [(v,) for v in values], processes=processes, threads=1,
                       on_event=events.append, describe=lambda i: f"job {i}")
    return results, events


@pytest.mark.slow  # test_compare's --workers 2 run goes through the same pool
def test_results_come_back_in_job_order_with_every_event():
    results, events = _run([3, 1, 2], processes=2)
    assert results == [9, 1, 4] and events == [1, 1, 1]


@pytest.mark.slow  # a process start each (torch import): the two below are in make test
def test_a_user_error_in_a_worker_is_raised_as_it_is():
    with pytest.raises(SpecError, match=r"experiment.x: bad \(got -1\)"):
        _run([1, -1])


@pytest.mark.slow
def test_a_bug_in_a_worker_shows_its_traceback():
    with pytest.raises(RuntimeError, match="job 1 failed in a worker process:(.|\n)*"
                       "ZeroDivisionError: a bug"):
        _run([1, -2])


def parent_of_a_child(code: int, *, report) -> tuple[int, str]:
    """A job that starts a process of its own, as a run's DataLoader workers do."""
    child = multiprocessing.Process(target=os._exit, args=(code,))
    child.start()
    child.join()
    return child.exitcode, multiprocessing.get_start_method()


def test_a_job_may_start_processes_of_its_own_as_the_runner_would():
    # a daemon worker cannot (multiprocessing's "daemonic processes are not allowed to
    # have children"): a streamed folder's loader workers crashed every --workers run;
    # and they start by the platform's default method, not by the spawn the worker
    # inherits (a fresh interpreter per loader per epoch: 11 s an epoch for 12 images)
    results = run_jobs(parent_of_a_child, [(3,)], processes=1, threads=1,
                       on_event=print, describe=str)
    assert results == [(3, multiprocessing.get_all_start_methods()[0])]


def test_a_killed_worker_is_a_clear_error_not_a_hang():
    with pytest.raises(WorkerDied, match="killed by signal 9 .*run the same command again"):
        _run([-3, 1])


# A parent with two workers that train "forever", killed with -9 (or SIGTERM): its workers
# must end on their own within seconds.
PARENT = """
import sys, time
from convdrop.lab.runs.workers import run_jobs, sigterm_as_interrupt
from test_workers import sleeper
with sigterm_as_interrupt():
    run_jobs(sleeper, [(sys.argv[1],), (sys.argv[1],)], processes=2, threads=1,
             on_event=print, describe=str)
"""


def sleeper(folder: str, *, report) -> None:
    Path(folder, f"worker-{os.getpid()}").touch()
    time.sleep(300)


class _Touching(torch.utils.data.Dataset):
    """Each item read marks the reading process with a file ``loader-PID``."""

    def __init__(self, folder: str) -> None:
        self.folder = folder

    def __len__(self) -> int:
        return 64

    def __getitem__(self, index: int) -> int:
        Path(self.folder, f"loader-{os.getpid()}").touch()
        return index


def loader_sleeper(folder: str, *, report) -> None:
    """A run that reads a batch through a DataLoader worker, then trains "forever"."""
    Path(folder, f"worker-{os.getpid()}").touch()
    for _ in torch.utils.data.DataLoader(_Touching(folder), batch_size=2, num_workers=1):
        time.sleep(300)


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
@pytest.mark.parametrize("sig, job", [(signal.SIGKILL, "sleeper"), (signal.SIGTERM, "sleeper"),
                                      pytest.param(signal.SIGKILL, "loader_sleeper",
                                                   marks=pytest.mark.slow)])
def test_workers_die_with_their_parent(tmp_path, sig, job):
    """With a DataLoader worker under each run worker too: PyTorch's watch on its parent
    ends it once the run worker is gone (every 5 s)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), *sys.path])}
    code = PARENT.replace("sleeper", job)
    parent = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], env=env,
                              start_new_session=True, stderr=subprocess.DEVNULL)
    marks = 2 if job == "sleeper" else 4  # a loader-PID per run worker too
    try:
        deadline = time.monotonic() + 120
        while len(list(tmp_path.iterdir())) < marks and time.monotonic() < deadline:
            assert parent.poll() is None, "the parent ended before its workers started"
            time.sleep(0.1)
        workers = [int(p.name.split("-")[1]) for p in tmp_path.glob("worker-*")]
        assert len(workers) == 2 and len(list(tmp_path.glob("loader-*"))) == marks - 2
        parent.send_signal(sig)
        parent.wait(timeout=60)
        assert wait_until_gone(parent.pid) == []  # workers, resource tracker: all gone
    finally:
        for pid in session_processes(parent.pid):
            os.kill(pid, signal.SIGKILL)
