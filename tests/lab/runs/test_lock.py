"""convdrop.lab.runs.lock: one writer per folder; a stale lock is taken over, a live one refused."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest

from convdrop.cli import main
from convdrop.errors import RunFolderError
from convdrop.lab.runs import lock

# Another runner holding the lock, as lock.hold does (flock, then its record), in plain
# Python so it starts in milliseconds.
HOLDER = """
import fcntl, json, os, socket, sys, time
fd = os.open(os.path.join(sys.argv[1], ".convdrop.lock"), os.O_RDWR | os.O_CREAT)
fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname()}).encode())
print("held", flush=True)
time.sleep(120)
"""


@pytest.fixture
def held(tmp_path):
    """A live process holding ``tmp_path / "out"``'s lock; yields (folder, its pid)."""
    folder = tmp_path / "out"
    folder.mkdir()
    process = subprocess.Popen([sys.executable, "-c", HOLDER, str(folder)],
                               stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline().strip() == "held"
        yield folder, process.pid
    finally:
        process.kill()
        process.wait()


def _dead_pid() -> int:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    return int(done.stdout)


def test_a_second_holder_is_refused_with_the_holders_pid_and_host(held):
    folder, pid = held
    with pytest.raises(RunFolderError, match=f"in use by another convdrop process \\(pid {pid} "
                       f"on host {socket.gethostname()}"), lock.hold(folder):
        pass


@pytest.mark.parametrize("command", [["compare", "--methods", "control"],
                                     ["sweep", "--method", "dropout", "--p", "0.1"]])
def test_a_second_runner_on_the_same_out_refuses_prints_and_writes_nothing(held, capsys,
                                                                            command):
    """Refused in one line, without the header a running comparison prints first."""
    folder, pid = held
    before = sorted(p.name for p in folder.iterdir())
    code = main([*command, "--data", "synthetic", "--train-size", "30", "--epochs", "1",
                 "--seeds", "1", "--model-option", "width=4", "--out", str(folder),
                 "--quiet"])
    out, err = capsys.readouterr()
    assert code == 2 and f"pid {pid}" in err and "--out" in err
    assert len(err.strip().splitlines()) == 1 and out == ""
    assert sorted(p.name for p in folder.iterdir()) == before  # no config.json, no runs/


def test_a_stale_lock_of_a_dead_process_is_taken_over_with_a_warning(tmp_path):
    record = {"pid": _dead_pid(), "host": socket.gethostname(), "since": "earlier"}
    (tmp_path / lock.LOCK_NAME).write_text(json.dumps(record))
    stale_temp = tmp_path / ".metrics.csv.abcd1234.tmp"  # what a killed writer leaves
    stale_temp.write_text("half")
    with pytest.warns(UserWarning, match=f"took over the stale lock .* pid {record['pid']}"):
        with lock.hold(tmp_path):
            mine = json.loads((tmp_path / lock.LOCK_NAME).read_text())
            assert mine["pid"] == os.getpid() and not stale_temp.exists()
    assert not (tmp_path / lock.LOCK_NAME).exists()  # released: the file is gone


def test_a_lock_from_another_host_is_not_taken_over(tmp_path):
    record = {"pid": 1, "host": "elsewhere.example", "since": "earlier"}
    (tmp_path / lock.LOCK_NAME).write_text(json.dumps(record))
    with pytest.raises(RunFolderError, match="host elsewhere.example.*delete .*convdrop.lock"):
        with lock.hold(tmp_path):
            pass


def test_a_retry_of_the_same_run_takes_over_its_lock_from_another_host(tmp_path):
    """A Ray task retried after its node died: the dead attempt's lock names the same owner."""
    record = {"pid": 1, "host": "dead-node.example", "since": "earlier", "owner": "t:a/seed0"}
    (tmp_path / lock.LOCK_NAME).write_text(json.dumps(record))
    with pytest.warns(UserWarning, match="took over the stale lock"):
        with lock.hold(tmp_path, owner="t:a/seed0"):
            mine = json.loads((tmp_path / lock.LOCK_NAME).read_text())
            assert mine["owner"] == "t:a/seed0" and mine["host"] == socket.gethostname()
    (tmp_path / lock.LOCK_NAME).write_text(json.dumps({**record, "host": "elsewhere.example"}))
    with pytest.raises(RunFolderError, match="host elsewhere.example"):  # another run's lock
        with lock.hold(tmp_path, owner="t:b/seed0"):
            pass


def test_a_live_holder_is_refused_even_with_the_same_owner(held):
    folder, pid = held  # the flock decides: an attempt still running keeps its run
    with pytest.raises(RunFolderError, match=f"pid {pid}"), lock.hold(folder, owner="x"):
        pass


def test_the_lock_is_released_on_errors_and_can_be_taken_again(tmp_path):
    with pytest.raises(KeyError), lock.hold(tmp_path):
        raise KeyError("boom")
    with lock.hold(tmp_path):
        pass
    assert not list(tmp_path.iterdir())


def test_a_killed_holder_leaves_a_lock_that_the_next_runner_takes(held, recwarn):
    folder, pid = held
    os.kill(pid, 9)
    deadline = time.monotonic() + 30
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        os.waitpid(pid, os.WNOHANG)  # reap it: the fixture's child
        time.sleep(0.05)
    with lock.hold(folder):
        pass
    assert any("took over the stale lock" in str(w.message) for w in recwarn)


@pytest.fixture
def other_process():
    """A live process that is not a convdrop runner (as when the kernel reuses a dead
    holder's pid); yields its pid."""
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        yield process.pid
    finally:
        process.kill()
        process.wait()


@pytest.mark.parametrize("started", [1, None])  # another start time; none (an older lock file)
def test_a_stale_lock_whose_pid_was_reused_does_not_say_it_no_longer_runs(tmp_path,
                                                                        other_process, started):
    record = {"pid": other_process, "host": socket.gethostname(), "since": "earlier"}
    if started is not None:
        record["started"] = started
    (tmp_path / lock.LOCK_NAME).write_text(json.dumps(record))
    with pytest.warns(UserWarning) as caught, lock.hold(tmp_path):
        mine = json.loads((tmp_path / lock.LOCK_NAME).read_text())
    (text,) = [str(w.message) for w in caught]
    assert "no longer runs" not in text
    assert (f"pid {other_process}: the process that held it ended without removing it, and "
            f"pid {other_process} now belongs to another process") in text
    assert mine["pid"] == os.getpid() and mine["started"] > 1  # recorded for the next reader


def test_the_stale_lock_warning_is_one_line_on_the_console(tmp_path, capsys):
    """Python's default format adds the warning's file, line and source line; the command
    line shows the message alone."""
    out = tmp_path / "out"
    out.mkdir()
    record = {"pid": _dead_pid(), "host": socket.gethostname(), "since": "earlier"}
    (out / lock.LOCK_NAME).write_text(json.dumps(record))
    shown: list[str] = []
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = lambda message, category, filename, lineno, file=None, \
            line=None: shown.append(warnings.formatwarning(message, category, filename, lineno,
                                                           line))
        assert main(["compare", "--data", "synthetic", "--train-size", "30", "--epochs", "1",
                     "--seeds", "1", "--methods", "control", "--out", str(out), "--quiet",
                     "--workers", "1"]) == 0
    assert shown == [f"convdrop compare: warning: took over the stale lock {out / lock.LOCK_NAME}"
                     f" of pid {record['pid']}, which no longer runs\n"]


def _full(where: Path) -> None:
    """A 1 MB tmpfs at ``where``, filled to the last byte."""
    where.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(where)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip() or 'not permitted'})")
    with open(where / "filler", "wb", buffering=0) as handle:
        with contextlib.suppress(OSError):
            while True:
                handle.write(b"\0" * 4096)


@pytest.mark.parametrize("disk", ["simulated", "a real full tmpfs"])
def test_a_disk_full_when_the_lock_is_written_is_one_line_and_leaves_no_lock(
        tmp_path, capsys, monkeypatch, disk):
    """The lock file is created (an inode), then its record cannot be written."""
    if disk == "simulated":
        def no_space(fd, data, offset):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        monkeypatch.setattr(lock.os, "pwrite", no_space)
        out = tmp_path / "out"
    else:
        out = tmp_path / "disk" / "out"
    try:
        if disk != "simulated":
            _full(tmp_path / "disk")
        code = main(["compare", "--data", "synthetic", "--train-size", "30", "--epochs", "1",
                     "--seeds", "1", "--methods", "control", "--model-option", "width=4",
                     "--out", str(out), "--quiet"])
        printed, err = capsys.readouterr()
        assert code == 2 and printed == "" and "Traceback" not in err
        assert err.strip() == (f"convdrop compare: error: --out {out}: cannot write "
                               f"{out / lock.LOCK_NAME}: No space left on device (disk full: "
                               "free some space and run the same command again)")
        assert list(out.iterdir()) == []  # no empty .convdrop.lock
    finally:
        if disk != "simulated" and os.path.ismount(tmp_path / "disk"):
            subprocess.run(["umount", str(tmp_path / "disk")], check=False)
