"""``convdrop train``: one run from the CLI, refusal and resume, and the same under torchrun."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

from convdrop.cli import main
from convdrop.lab.runs.run import execute
from convdrop.lab.spec.experiment import build_spec
from convdrop.lab.train.checkpoint import load_checkpoint
from convdrop.lab.train.store import RunPaths, read_metrics

METHOD = "dropblock_scheduled"  # linear ramp to p = 0.1
# 48 examples, batch 16: 3 optimizer steps per epoch.
ARGS = ["train", "--method", METHOD, "--data", "synthetic", "--train-size", "48",
        "--batch-size", "16", "--model-option", "width=8", "--device", "cpu", "--quiet"]


def _paths(out) -> RunPaths:
    return RunPaths.of(out, METHOD, 0)


def test_train_writes_a_compare_run_and_skips_it_when_finished(tmp_path, capsys):
    out = tmp_path / "out"
    assert main([*ARGS, "--epochs", "2", "--out", str(out)]) == 0
    paths = _paths(out)
    result = json.loads(paths.result.read_text())
    assert result["status"] == "ok" and result["epochs"] == 2 and result["world_size"] == 1
    assert 0 <= result["test_acc"] <= 1 and 0 <= result["train_acc"] <= 1
    assert [row["epoch"] for row in read_metrics(paths)] == [1, 2]
    config = json.loads(paths.config.read_text())
    assert config["spec"]["model_options"] == {"width": 8} and config["world_size"] == 1
    assert not paths.checkpoint.exists()
    capsys.readouterr()
    assert main([*ARGS[:-1], "--epochs", "2", "--out", str(out)]) == 0
    assert "already holds this finished run" in capsys.readouterr().out
    # compare with the same settings (its default two worker processes on the bundled
    # data, as train keeps in the key) finds the run finished.
    spec = build_spec(overrides={"data": "synthetic", "train_size": 48, "batch_size": 16,
                                 "epochs": 2, "methods": [METHOD], "model_options": {"width": 8}})
    assert spec.workers == 2
    assert execute(spec, METHOD, 0, out) == {k: v for k, v in result.items() if k != "sha256"}


def test_compare_and_train_share_runs_both_ways(tmp_path, capsys):
    """compare's pool runs are train's, and train's are compare's: same key, same threads."""
    out = tmp_path / "out"
    flags = ["--data", "synthetic", "--train-size", "24", "--batch-size", "12",
             "--model-option", "width=4", "--epochs", "2"]
    assert main(["compare", *flags, "--quiet", "--methods", "control,dropout", "--seeds", "1",
                 "--out", str(out)]) == 0
    compared = json.loads(RunPaths.of(out, "control", 0).result.read_text())
    capsys.readouterr()
    assert main(["train", *flags, "--method", "control", "--out", str(out)]) == 0
    assert "already holds this finished run" in capsys.readouterr().out
    assert main(["train", *flags, "--method", "control", "--seed", "1", "--out",
                 str(out)]) == 0
    trained = json.loads(RunPaths.of(out, "control", 1).result.read_text())
    capsys.readouterr()
    assert main(["compare", *flags, "--quiet", "--methods", "control,dropout", "--seeds", "2",
                 "--out", str(out)]) == 0
    results = {(r["method"], r["seed"]): r
               for r in json.loads((out / "results.json").read_text())}
    for got, written in ((results[("control", 0)], compared), (results[("control", 1)], trained)):
        assert got == {k: v for k, v in written.items() if k != "sha256"}


def test_an_unfinished_run_needs_resume_and_continues_the_ramp(tmp_path, capsys):
    out, straight = tmp_path / "out", tmp_path / "straight"
    assert main([*ARGS, "--epochs", "3", "--out", str(out), "--stop-after", "1"]) == 0
    paths = _paths(out)
    state = load_checkpoint(paths.checkpoint)
    assert state["epoch"] == 1 and state["drop_scheduler"]["step"] == 3
    assert not paths.result.exists() and len(read_metrics(paths)) == 1
    capsys.readouterr()
    assert main([*ARGS, "--epochs", "3", "--out", str(out)]) == 2
    assert "holds an unfinished run (checkpoint.pt); pass --resume" in capsys.readouterr().err
    assert main([*ARGS, "--epochs", "3", "--out", str(out), "--lr", "0.01", "--resume"]) == 2
    assert "written by a run with run_key" in capsys.readouterr().err
    assert main([*ARGS, "--epochs", "3", "--out", str(out), "--resume"]) == 0
    rows = read_metrics(paths)
    assert [row["epoch"] for row in rows] == [1, 2, 3]
    assert [row["drop_rate"] for row in rows] == pytest.approx([1 / 3 * 0.1, 2 / 3 * 0.1, 0.1])
    result = json.loads(paths.result.read_text())
    assert result["epochs"] == 3 and not paths.checkpoint.exists()
    assert main([*ARGS, "--epochs", "3", "--out", str(straight)]) == 0
    uninterrupted = json.loads(_paths(straight).result.read_text())
    assert result["test_loss"] == pytest.approx(uninterrupted["test_loss"], abs=1e-6)


@pytest.mark.parametrize(("extra", "message"), [
    (["--method", "magic"], "unknown method 'magic'"),
    (["--preset", "schedule", "--method", ""], "--method is required: the spec lists 3"),
])
def test_bad_arguments_are_named(tmp_path, capsys, extra, message):
    args = [a for a in ARGS if a != METHOD and a != "--method"]
    assert main([*args, "--method", METHOD, "--out", str(tmp_path), *extra]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(("extra", "message"), [
    (["--seed", "-1"], "argument --seed: invalid value '-1': input should be greater than or "
                       "equal to 0"),
    (["--seed", str(2**32)], "less than 4294967296"),
    (["--epochs", "0"], "argument --epochs: invalid value '0'"),
    (["--model-option", "width"], "argument --model-option: invalid value 'width': expected "
                                  "KEY=VALUE, e.g. width=16"),
])
def test_bad_flag_values_stop_the_parse(tmp_path, capsys, extra, message):
    with pytest.raises(SystemExit) as info:
        main([*ARGS, "--out", str(tmp_path), *extra])
    assert info.value.code == 2 and message in capsys.readouterr().err


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _torchrun(*args: str) -> subprocess.CompletedProcess:
    """``torchrun --nproc-per-node 2 -m convdrop train ...`` on loopback, one thread each."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo"}
    command = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1",
               "--nproc-per-node", "2", "--master-addr", "127.0.0.1",
               "--master-port", str(_free_port()), "-m", "convdrop", *args]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_torchrun_two_processes_stop_and_resume(tmp_path):
    out = tmp_path / "out"
    args = [a for a in ARGS if a != "--quiet"]
    first = _torchrun(*args, "--epochs", "2", "--out", str(out), "--stop-after", "1")
    assert first.stdout.count("epoch 1/2") == 1  # rank 0 speaks, rank 1 does not
    paths = _paths(out)
    state = load_checkpoint(paths.checkpoint)
    assert state["epoch"] == 1 and state["world_size"] == 2 and len(state["rank_rng"]) == 2
    assert state["drop_scheduler"]["step"] == 3  # 24 examples per rank, batch 8 per rank
    _torchrun(*args, "--epochs", "2", "--out", str(out), "--resume")
    rows = read_metrics(paths)
    assert [row["epoch"] for row in rows] == [1, 2]
    assert rows[-1]["drop_rate"] == pytest.approx(0.1)  # continued the ramp to its target
    result = json.loads(paths.result.read_text())
    assert result["world_size"] == 2 and result["epochs"] == 2 and result["status"] == "ok"
    assert json.loads(paths.config.read_text())["world_size"] == 2
    assert sorted(p.name for p in out.rglob("*") if p.is_file()) == [
        "config.json", "metrics.csv", "result.json"]
