"""Two ``convdrop sweep --search optuna --storage postgresql://...`` processes share one
study on a real PostgreSQL server, started here from Debian's binaries in a temporary
folder on 127.0.0.1 and stopped after.

Skipped where the server binaries are absent (``apt-get install postgresql``; ``.ci/run``
installs them when it runs as root). initdb refuses to run as root, so as root the server
runs as the ``postgres`` user (or ``nobody``) from a folder it owns.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from convdrop.lab.sweep.search.retry import PID_ATTR
from convdrop.lab.sweep.search.study import url_storage

TINY = ["--data", "synthetic", "--train-size", "24", "--seeds", "1", "--batch-size", "12",
        "--image-size", "16", "--model-option", "width=4", "--workers", "1", "--quiet",
        "--epochs", "1", "--p", "0.05,0.3", "--block-size", "1,3", "--search", "optuna",
        "--sampler", "random", "--confirm", "0", "--study", "shared"]
TIMEOUT_S = 600  # generous for a shared machine; the test ends as soon as it can


def _binaries() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _server_user() -> tuple[Path, Callable[..., subprocess.CompletedProcess]]:
    """A folder the server's user owns, and how to run a command as that user."""
    if os.geteuid() != 0:
        return Path(tempfile.mkdtemp(prefix="convdrop-pg-")), lambda *cmd: subprocess.run(
            cmd, capture_output=True, text=True, timeout=TIMEOUT_S)
    if shutil.which("runuser") is None:
        pytest.skip("running as root without runuser: cannot start PostgreSQL as another user")
    name = next((n for n in ("postgres", "nobody") if _exists(n)), None)
    if name is None:
        pytest.skip("running as root with neither a postgres nor a nobody user")
    folder = Path(tempfile.mkdtemp(prefix="convdrop-pg-"))  # in /tmp, reachable by the user
    entry = pwd.getpwnam(name)
    os.chown(folder, entry.pw_uid, entry.pw_gid)
    return folder, lambda *cmd: subprocess.run(["runuser", "-u", name, "--", *cmd],
                                               capture_output=True, text=True,
                                               timeout=TIMEOUT_S)


def _exists(user: str) -> bool:
    try:
        pwd.getpwnam(user)
    except KeyError:
        return False
    return True


@pytest.fixture
def postgres_url() -> Iterator[str]:
    binaries = _binaries()
    if binaries is None:
        pytest.skip("PostgreSQL server binaries absent (Debian: apt-get install postgresql)")
    folder, run = _server_user()
    data, port = folder / "data", _free_port()
    try:
        made = run(str(binaries / "initdb"), "-D", str(data), "-U", "postgres",
                   "--auth=trust", "-E", "UTF8", "--no-sync")
        assert made.returncode == 0, made.stderr
        started = run(str(binaries / "pg_ctl"), "-D", str(data), "-l", str(folder / "log"),
                      "-w", "-t", "60", "-o", f"-h 127.0.0.1 -p {port} -k {folder} -F",
                      "start")
        assert started.returncode == 0, started.stderr + (folder / "log").read_text()
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        if (data / "postmaster.pid").exists():
            run(str(binaries / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(folder, ignore_errors=True)


def test_two_processes_share_one_study_on_postgresql(postgres_url, tmp_path):
    processes = [subprocess.Popen(
        [sys.executable, "-m", "convdrop", "sweep", *TINY, "--storage", postgres_url,
         "--trials", str(trials), "--sampler-seed", str(seed), "--out", str(tmp_path / name)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        for name, trials, seed in (("one", 4, 1), ("two", 4, 2))]  # as on two machines
    for process in processes:
        _, err = process.communicate(timeout=TIMEOUT_S)
        assert process.returncode == 0, err
    study = optuna.load_study(study_name="shared", storage=url_storage(postgres_url))
    trials = study.get_trials(deepcopy=False)
    # both stop once the study holds 4; two that ask at the same moment may add one
    assert sorted(t.number for t in trials) in ([0, 1, 2, 3], [0, 1, 2, 3, 4])
    assert all(t.state == TrialState.COMPLETE for t in trials)
    assert {t.user_attrs[PID_ATTR] for t in trials} <= {p.pid for p in processes}
    for name in ("one", "two"):  # each reports the study as it stood when it finished
        assert "- storage: postgresql://postgres@127.0.0.1" in (
            tmp_path / name / "report.md").read_text()
        assert not (tmp_path / name / "optuna.journal").exists()
