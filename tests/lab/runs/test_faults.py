"""The runner under faults: kill -9 at seeded moments, a full disk, a refused rerun.

Each test asserts that finished runs stay intact, that nothing outside ``--out`` is
written, and that an error is one line naming the file (or ``--out``). A tiny
``compare`` on synthetic data is the subject throughout; hostile input (names, ``--out``
problems, undecodable paths) is in ``test_faults_input.py``.
"""

from __future__ import annotations

import errno
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import torch

from convdrop import _io
from convdrop.cli import main
from convdrop.lab.runs.run import check_run, execute
from convdrop.lab.runs.runner import compare, grid
from convdrop.lab.spec.experiment import build_spec
from convdrop.lab.train.store import RunPaths

from conftest import FLAGS, files, session_processes, wait_until_gone

TINY = {"data": "synthetic", "train_size": 32, "epochs": 2, "seeds": 1, "batch_size": 16,
        "workers": 1, "methods": ["control", "dropblock"], "model_options": {"width": 4}}
def results_without_time(out: Path) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "seconds"}
            for r in json.loads((out / "results.json").read_text())]


def assert_consistent(out: Path, spec, *, temps_allowed: bool = False) -> None:
    """Every run's files read back (finished or resumable), and no temp file is left
    (``temps_allowed`` after a kill: the next start removes them)."""
    assert temps_allowed or not list(out.rglob("*.tmp"))
    for method, seed in grid(spec):
        check_run(spec, method, seed, out)


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """An uninterrupted compare of TINY (one process)."""
    out = tmp_path_factory.mktemp("reference") / "out"
    compare(build_spec(overrides=TINY), out, show_progress=False)
    return out


# --- kill -9 ---------------------------------------------------------------------------------

KILL_EPOCHS = 12  # long enough that the kill lands mid-training on a quiet machine too

@pytest.fixture(scope="module")
def reference_two_workers() -> list[dict]:
    """The results of ``compare --workers 2``, computed here with a worker's thread count."""
    spec = build_spec(overrides={**TINY, "workers": 2, "epochs": KILL_EPOCHS})
    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // 2))
    try:
        with tempfile.TemporaryDirectory() as out:
            results = [execute(spec, method, seed, Path(out)) for method, seed in grid(spec)]
    finally:
        torch.set_num_threads(threads)
    return [{k: v for k, v in r.items() if k != "seconds"} for r in results]


@pytest.mark.parametrize("seed", [0, pytest.param(1, marks=pytest.mark.slow),
                                  pytest.param(2, marks=pytest.mark.slow)])
def test_kill_9_at_a_seeded_moment_keeps_runs_and_resumes_bit_identical(
        tmp_path, seed, reference_two_workers):
    """kill -9 of ``compare --workers 2`` at a seeded moment while it trains (within a
    quarter second of the first epoch's row; the runs take about a second each)."""
    spec = build_spec(overrides={**TINY, "workers": 2, "epochs": KILL_EPOCHS})
    cwd, out = tmp_path / "cwd", tmp_path / "cwd" / "out"
    cwd.mkdir()
    flags = [*FLAGS, "--epochs", str(KILL_EPOCHS), "--workers", "2"]  # the last counts
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    runner = subprocess.Popen([sys.executable, "-m", "convdrop", "compare", *flags, "--out",
                               "out"], cwd=cwd, env=env, start_new_session=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not list(out.glob("runs/*/seed0/metrics.csv")) and time.monotonic() < deadline:
            assert runner.poll() is None, "compare ended before training"
            time.sleep(0.05)
        time.sleep(random.Random(seed).uniform(0.0, 0.25))
        assert runner.poll() is None, "compare finished before the kill: lengthen the runs"
        runner.send_signal(signal.SIGKILL)
        runner.wait(timeout=60)
        assert wait_until_gone(runner.pid) == []  # no worker trains on
    finally:
        for pid in session_processes(runner.pid):
            os.kill(pid, signal.SIGKILL)
    assert sorted(p.name for p in cwd.iterdir()) == ["out"]  # nothing written beside it
    finished = {p: p.read_bytes() for p in out.glob("runs/*/seed0/result.json")}
    assert_consistent(out, spec, temps_allowed=True)
    with pytest.warns(UserWarning, match="took over the stale lock"):  # the killed one's
        compare(spec, out, show_progress=False)  # resumes what was cut
    assert all(path.read_bytes() == data for path, data in finished.items())  # kept as they were
    assert results_without_time(out) == reference_two_workers
    assert_consistent(out, spec)
    assert not (out / ".convdrop.lock").exists()


# --- a full disk -----------------------------------------------------------------------------

@pytest.mark.parametrize("fail_at", [4, 9])  # a checkpoint mid-run; a figure of the report
def test_a_full_disk_is_one_line_and_the_rerun_finishes_the_same(tmp_path, monkeypatch, capsys,
                                                                   reference, fail_at):
    real, calls = os.fsync, [0]

    def fsync(fd: int) -> None:
        calls[0] += 1
        if calls[0] == fail_at:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(fd)

    out = tmp_path / "out"
    monkeypatch.setattr(_io.os, "fsync", fsync)
    assert main(["compare", *FLAGS, "--workers", "1", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"--out {out}: cannot write {out}" in err
    assert "No space left on device (disk full" in err
    monkeypatch.setattr(_io.os, "fsync", real)
    assert_consistent(out, build_spec(overrides=TINY))
    assert main(["compare", *FLAGS, "--workers", "1", "--out", str(out)]) == 0
    assert results_without_time(out) == results_without_time(reference)


def _mount_tmpfs(where: Path, size: str) -> None:
    where.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip() or 'not permitted'}); "
                    "the full disk is simulated by the test above")


@pytest.mark.skipif(shutil.which("mount") is None, reason="no mount command")
def test_a_real_full_tmpfs_is_one_line_and_the_rerun_finishes_the_same(tmp_path, capsys,
                                                                      reference):
    disk = tmp_path / "disk"
    _mount_tmpfs(disk, "1m")
    try:
        out = disk / "out"
        stat = os.statvfs(disk)
        filler = disk / "filler"
        filler.write_bytes(b"\0" * (stat.f_bavail * stat.f_frsize - 200 * 1024))  # < 2 checkpoints
        assert main(["compare", *FLAGS, "--workers", "1", "--out", str(out)]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "No space left on device" in err
        assert f"--out {out}: cannot write {out}" in err
        assert_consistent(out, build_spec(overrides=TINY))
        filler.unlink()
        assert main(["compare", *FLAGS, "--workers", "1", "--out", str(out)]) == 0
        assert results_without_time(out) == results_without_time(reference)
    finally:
        subprocess.run(["umount", str(disk)], check=False)


# --- a refused rerun -------------------------------------------------------------------------

@pytest.mark.parametrize("change", [["--epochs", "3"], ["--workers", "2"], ["--lr", "0.01"]])
def test_a_refused_rerun_touches_no_file(tmp_path, capsys, reference, change):
    out = tmp_path / "out"
    shutil.copytree(reference, out)
    before = files(out)
    assert main(["compare", *FLAGS, "--workers", "1", "--out", str(out), *change]) == 2
    err = capsys.readouterr().err.strip()
    assert "holds a run with other settings" in err and len(err.splitlines()) == 1
    assert files(out) == before  # config.json included


def test_a_rerun_removes_stale_temp_files_and_skips_finished_runs(tmp_path, reference):
    out = tmp_path / "out"
    shutil.copytree(reference, out)
    run = RunPaths.of(out, "control", 0)
    temps = [out / ".report.md.k2j4h5g6.tmp", run.root / ".checkpoint.pt.a1b2c3d4.tmp"]
    for temp in temps:
        temp.write_bytes(b"half a write")
    result = run.result.read_bytes()
    compare(build_spec(overrides=TINY), out, show_progress=False)
    assert not any(temp.exists() for temp in temps)
    assert run.result.read_bytes() == result
