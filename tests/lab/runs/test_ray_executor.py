"""convdrop.lab.runs.ray_executor on a real Ray bound to 127.0.0.1: same results as local,
a killed worker retried from its checkpoint, the shared-``--out`` check, Ctrl-C.

The module's cluster is started as a user would (``ray start --head --block``, two CPUs,
listening on 127.0.0.1 only) and joined with ``--ray-address``; the Ctrl-C test runs
``convdrop compare --executor ray`` without an address, so the command starts (and must
stop) a local Ray of its own. Runs are tiny and synthetic; Ray gives each one CPU and one
torch thread, and every reference below is computed here with one thread.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from convdrop._extras import missing
from convdrop.cli import main
from convdrop.errors import ArgumentError, OutputError
from convdrop.lab.runs import ray_executor
from convdrop.lab.runs.executors import LocalExecutor
from convdrop.lab.runs.ray_executor import LOOPBACK_ONLY, RayExecutor, connect, on_loopback
from convdrop.lab.runs.run import execute
from convdrop.lab.runs.runner import compare
from convdrop.lab.runs.shared_out import TOKEN_NAME
from convdrop.lab.spec.experiment import build_spec
from convdrop.lab.sweep.expand import build_sweep
from convdrop.lab.sweep.runner import run_sweep
from convdrop.lab.train.store import RunPaths

from conftest import (
    listening,
    processes_mentioning,
    session_processes,
    stop_session,
    wait_until_gone,
)

TINY = {"data": "synthetic", "train_size": 32, "batch_size": 16, "model_options": {"width": 4}}
SAME = build_spec(overrides={**TINY, "epochs": 2, "seeds": 2, "workers": 1,
                             "methods": ["control", "dropblock"]})
LONG_EPOCHS = 12  # a run of about a second: long enough to be cut mid-training
LONG_FLAGS = ["--data", "synthetic", "--train-size", "32", "--batch-size", "16",
              "--model-option", "width=4", "--epochs", str(LONG_EPOCHS), "--seeds", "2",
              "--methods", "control"]
# the same spec as LONG_FLAGS give (workers 2 comes from the bundled data's defaults)
LONG = build_spec(overrides={**TINY, "epochs": LONG_EPOCHS, "seeds": 2, "methods": ["control"]})


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    """A two-CPU Ray head on 127.0.0.1 (``ray start --head --block``); yields its address.

    With token authentication, as Ray 2.60 starts a cluster by default: the token is
    this module's, in the environment of the head and of this process (the driver).
    """
    if missing(["ray"]):
        pytest.skip("the ray extra is not installed: pip install 'convdrop[ray]'")
    temp = Path(tempfile.mkdtemp(prefix="cdray", dir="/tmp"))  # Ray's socket paths stay short
    port = _free_port()
    auth = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    saved = {name: os.environ.get(name) for name in auth}
    os.environ.update(auth)
    env = {**os.environ, LOOPBACK_ONLY: "0", "PYTHONPATH": os.pathsep.join(sys.path)}
    log = temp / "head.log"
    with log.open("w") as sink:
        head = subprocess.Popen(
            [sys.executable, "-m", "ray.scripts.scripts", "start", "--head", f"--port={port}",
             "--node-ip-address=127.0.0.1", "--num-cpus=2", "--num-gpus=0",
             "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={temp}",
             "--block"], env=env, start_new_session=True, stdout=sink, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while "Ray runtime started" not in log.read_text(errors="replace"):
            assert head.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        yield f"127.0.0.1:{port}"
    finally:
        for name, value in saved.items():
            os.environ.pop(name) if value is None else os.environ.update({name: value})
        assert stop_session(head.pid) == []
        head.wait(timeout=10)
        shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture(scope="module")
def joined(cluster) -> Iterator[RayExecutor]:
    """This process joined to the cluster once for the module (``--ray-address``), so its
    Ray workers, and the torch they imported, serve every test; ``connect`` in a test
    reuses the connection."""
    with connect(cluster, SAME) as executor:
        yield executor


@pytest.fixture
def one_thread() -> Iterator[None]:
    """This process computes with one torch thread, as each Ray task here does."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def long_reference(tmp_path_factory) -> list[dict]:
    """LONG's results trained here, uninterrupted, with one thread (no ``seconds``)."""
    out = tmp_path_factory.mktemp("long_reference")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        results = [execute(LONG, "control", seed, out) for seed in range(LONG.seeds)]
    finally:
        torch.set_num_threads(before)
    return [_timeless(r) for r in results]


def _timeless(result: dict) -> dict:
    return {k: v for k, v in result.items() if k != "seconds"}


def _results(out: Path) -> list[dict]:
    return [_timeless(r) for r in json.loads((out / "results.json").read_text())]


def test_ray_gives_the_summary_of_the_local_executor(cluster, joined, tmp_path, one_thread):
    compare(SAME, tmp_path / "local", show_progress=False, executor=LocalExecutor())
    assert joined.describe() == (f"ray at {cluster}: 1 node(s), 2 CPUs, 0 GPUs; 1 CPU and 0 "
                                 "GPU per run (1 torch thread(s)), up to 2 runs at once")
    compare(SAME, tmp_path / "ray", show_progress=False, executor=joined)
    local, ray = tmp_path / "local", tmp_path / "ray"
    assert (ray / "summary.csv").read_bytes() == (local / "summary.csv").read_bytes()
    assert _results(ray) == _results(local)
    report = (ray / "report.md").read_text()
    assert f"- executor: ray at {cluster}: 1 node(s), 2 CPUs" in report
    assert f"- nodes: {socket.gethostname()}: control/seed0, control/seed1, " in report
    assert not (ray / TOKEN_NAME).exists() and not (ray / ".convdrop.lock").exists()


def test_a_killed_worker_is_retried_and_resumes_from_its_checkpoint(joined, tmp_path,
                                                                     long_reference):
    spec = LONG.model_copy(update={"seeds": 1})
    paths = RunPaths.of(tmp_path, "control", 0)
    seen: dict = {}

    def kill_mid_run() -> None:  # the worker's pid is in the run folder's lock
        deadline = time.monotonic() + 120
        while not paths.checkpoint.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        seen["pid"] = json.loads((paths.root / ".convdrop.lock").read_text())["pid"]
        seen["first_row"] = paths.metrics.read_text().splitlines()[1]
        seen["finished"] = paths.result.exists()
        os.kill(seen["pid"], signal.SIGKILL)

    killer = threading.Thread(target=kill_mid_run)
    killer.start()
    compare(spec, tmp_path, show_progress=False, executor=joined)
    killer.join()
    assert seen["pid"] != os.getpid() and not seen["finished"]
    assert _results(tmp_path) == long_reference[:1]  # equal to an uninterrupted run
    # resumed, not retrained: epoch 1's row (its timings too) is the killed attempt's
    assert paths.metrics.read_text().splitlines()[1] == seen["first_row"]
    assert not paths.checkpoint.exists() and not (paths.root / ".convdrop.lock").exists()


def test_a_node_that_does_not_see_out_fails_in_one_line(cluster, joined, tmp_path):
    elsewhere = tmp_path / "elsewhere"  # what a node with its own disk at that path sees
    elsewhere.mkdir()
    with connect(cluster, SAME, node_out=elsewhere) as executor:
        with pytest.raises(OutputError) as caught:
            compare(SAME, tmp_path / "out", show_progress=False, executor=executor)
    message = str(caught.value)
    assert "\n" not in message and f"--out {tmp_path / 'out'}" in message
    assert f"on node {socket.gethostname()} (127.0.0.1)" in message
    assert f"cannot read {elsewhere / TOKEN_NAME}" in message
    assert not (tmp_path / "out" / "runs").exists() and not list(elsewhere.iterdir())


@pytest.mark.slow  # 11 s on the loaded 2-core machine; beyond the four the issue asks for
def test_an_adaptive_sweep_runs_on_ray(cluster, joined, tmp_path):
    sweep = build_sweep(overrides={**TINY, "train_size": 24, "image_size": 16, "epochs": 1,
                                   "seeds": 4, "workers": 1},
                        sweep_overrides={"p": [0.1, 0.3], "adaptive": True, "min_seeds": 2})
    with connect(cluster, sweep.spec) as executor:
        report, _ = run_sweep(sweep, tmp_path, show_progress=False, executor=executor)
    results = json.loads((tmp_path / "results.json").read_text())
    text = report.read_text()
    assert "adaptive round 1: 3 settings up to 2 seeds" in text and "- executor: ray at" in text
    assert all(r["status"] == "ok" for r in results)
    assert {(r["method"], r["seed"]) for r in results} >= {
        (m, s) for m in sweep.spec.methods for s in (0, 1)}
    assert {r["seed"] for r in results if r["method"] == "control"} == {0, 1, 2, 3}


def test_a_search_trains_its_trials_side_by_side_and_confirms_on_ray(joined, tmp_path):
    optuna = pytest.importorskip("optuna")
    from optuna.trial import TrialState

    from convdrop.lab.sweep.search.runner import open_search, run_search
    from convdrop.lab.sweep.search.settings import SearchSettings

    sweep = build_sweep(overrides={**TINY, "train_size": 24, "image_size": 16, "epochs": 3,
                                   "seeds": 2, "workers": 1},
                        sweep_overrides={"p": [0.05, 0.3], "block_size": [1, 3]})
    settings = SearchSettings(trials=4, sampler="random", pruner="none", confirm=1,
                              sampler_seed=0)
    opened = open_search(sweep, tmp_path, settings)
    report, confirmation = run_search(opened, show_progress=False, executor=joined)
    trials = optuna.load_study(study_name="sweep", storage=opened.storage).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 4
    starts = [t.datetime_start for t in trials]
    ends = [t.datetime_complete for t in trials]
    assert starts[1] < ends[0]  # two slots: trial 1 began before trial 0 ended
    for trial in trials:  # each trial's value is its run's, trained by a Ray task
        result = json.loads((tmp_path / "runs" / trial.user_attrs["setting"] / "seed0"
                             / "result.json").read_text())
        assert trial.value == result["val_acc"]
    assert {(r["method"], r["seed"]) for r in confirmation.results} == {
        (m, s) for m in confirmation.sweep.spec.methods for s in (1000, 1001)}
    assert "- executor: ray at" in report.read_text()
    assert not (tmp_path / TOKEN_NAME).exists() and not (tmp_path / ".convdrop.lock").exists()


def test_ctrl_c_stops_every_ray_process_and_a_rerun_resumes(joined, tmp_path, long_reference):
    """SIGINT to the process group, as a terminal's Ctrl-C sends it, while runs train."""
    temp = Path(tempfile.mkdtemp(prefix="cdray", dir="/tmp"))  # this command's Ray lives here
    out, home = tmp_path / "out", tmp_path / "home"
    home.mkdir()
    env = {**os.environ, "TMPDIR": str(temp), "HOME": str(home),
           "PYTHONPATH": os.pathsep.join(sys.path)}
    for name in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_TMPDIR"):
        env.pop(name, None)
    driver = subprocess.Popen(
        [sys.executable, "-m", "convdrop", "compare", *LONG_FLAGS, "--executor", "ray",
         "--quiet", "--out", str(out)], env=env, start_new_session=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 180
        while not list(out.glob("runs/control/seed*/checkpoint.pt")):
            assert driver.poll() is None and time.monotonic() < deadline, driver.stdout.read()
            time.sleep(0.02)
        bound = listening(session_processes(driver.pid))  # its Ray's sockets, while it runs
        assert bound and bound <= {"127.0.0.1"}, bound
        os.killpg(driver.pid, signal.SIGINT)
        printed = driver.communicate(timeout=120)[0]
        assert driver.returncode == 130, printed
        assert printed.splitlines()[0].startswith("ray (local, on 127.0.0.1, started for this "
                                                  "command): 1 node(s)")
        assert wait_until_gone(driver.pid) == []
        assert processes_mentioning(temp) == []
        # its Ray's sessions, sockets and logs went with it, and no token was written
        assert list(temp.iterdir()) == [] and list(home.iterdir()) == []
    finally:
        stop_session(driver.pid)
        shutil.rmtree(temp, ignore_errors=True)
    finished = {p: p.read_bytes() for p in out.glob("runs/control/seed*/result.json")}
    started = {p: _untimed(p.read_text().splitlines()[1])
               for p in out.glob("runs/control/seed*/metrics.csv")}
    # On a quiet machine both tiny runs can end inside the 5 s the tasks get to stop
    # gracefully; the rerun then trains nothing, and the checks below still hold.
    assert started and not (out / TOKEN_NAME).exists()
    compare(LONG, out, show_progress=False, executor=joined)  # the rerun, on Ray too
    assert _results(out) == long_reference
    assert all(path.read_bytes() == data for path, data in finished.items())
    for path, row in started.items():  # the first epoch's numbers, kept or retrained alike
        assert _untimed(path.read_text().splitlines()[1]) == row, (path.read_text(), row)


def _untimed(row: str) -> list[str]:
    """A metrics.csv row without its wall-clock columns (seconds, images_per_s)."""
    return row.split(",")[:-2]


# --- without a cluster --------------------------------------------------------------------

def test_without_the_extra_it_is_one_line_naming_it(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", None)  # as if it were not installed
    with pytest.raises(ArgumentError, match=r"pip install 'convdrop\[ray\]'"):
        ray_executor.check_extra()
    code = main(["compare", "--data", "synthetic", "--executor", "ray", "--out",
                 str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "--executor ray needs the 'ray' extra (ray not installed)" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("address", "loopback"), [
    (None, True), ("127.0.0.1:6379", True), ("localhost:1234", True), ("[::1]:6379", True),
    ("10.0.0.5:6379", False), ("auto", False), ("ray://head:10001", False)])
def test_on_loopback(address, loopback):
    assert on_loopback(address) is loopback


def test_slots_count_runs_that_fit_each_node():
    nodes = [{"CPU": 8.0, "GPU": 1.0}, {"CPU": 2.0}]
    assert ray_executor._slots(nodes, 1, 0) == 10
    assert ray_executor._slots(nodes, 1, 0.25) == 4  # four runs share the one GPU
    assert ray_executor._slots(nodes, 3, 0) == 2
    assert ray_executor._slots(nodes, 0.5, 0) == 20
    assert ray_executor._slots(nodes, 16, 0) == 0


def test_gpus_per_run_default_and_device_checks():
    gpu, cpu = [{"CPU": 4.0, "GPU": 2.0}], [{"CPU": 4.0}]
    auto = SAME.model_copy(update={"device": "auto"})
    assert ray_executor._gpus(auto, gpu, None) == 1.0
    assert ray_executor._gpus(auto, cpu, None) == 0.0
    assert ray_executor._gpus(auto, gpu, 0.25) == 0.25
    assert ray_executor._gpus(SAME.model_copy(update={"device": "cpu"}), gpu, None) == 0.0
    cuda = SAME.model_copy(update={"device": "cuda"})
    with pytest.raises(ArgumentError, match="--device cuda: the Ray cluster has 0 GPU"):
        ray_executor._gpus(cuda, cpu, None)
    with pytest.raises(ArgumentError, match="--device cuda:1: on --executor ray"):
        ray_executor._gpus(SAME.model_copy(update={"device": "cuda:1"}), gpu, None)
