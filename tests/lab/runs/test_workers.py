"""convdrop.lab.runs.workers: results in order, errors carried over, no orphan processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

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


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_workers_die_with_their_parent(tmp_path, sig):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), *sys.path])}
    parent = subprocess.Popen([sys.executable, "-c", PARENT, str(tmp_path)], env=env,
                              start_new_session=True, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while len(list(tmp_path.glob("worker-*"))) < 2 and time.monotonic() < deadline:
            assert parent.poll() is None, "the parent ended before its workers started"
            time.sleep(0.1)
        workers = [int(p.name.split("-")[1]) for p in tmp_path.glob("worker-*")]
        assert len(workers) == 2
        parent.send_signal(sig)
        parent.wait(timeout=60)
        assert wait_until_gone(parent.pid) == []  # workers, resource tracker: all gone
    finally:
        for pid in session_processes(parent.pid):
            os.kill(pid, signal.SIGKILL)
