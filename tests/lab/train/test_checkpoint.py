"""Every file a run leaves, corrupted one kind at a time: one line naming the file and the fix.

convdrop.lab.train.checkpoint (header, checksum, epoch against metrics.csv and the spec) and
convdrop.lab.train.store (result.json, metrics.csv). A finished run and a run interrupted
after epoch 1 of 2 are trained once; each test damages a copy.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from convdrop.cli import main
from convdrop.errors import RunFolderError
from convdrop.lab.runs.run import check_run, execute
from convdrop.lab.spec.experiment import build_spec
from convdrop.lab.train.checkpoint import MAGIC, load_checkpoint, save_checkpoint
from convdrop.lab.train.store import RunPaths

TINY = {"data": "synthetic", "train_size": 32, "epochs": 2, "seeds": 1, "batch_size": 16,
        "workers": 1, "methods": ["control"], "model_options": {"width": 4}}
FLAGS = ["--data", "synthetic", "--train-size", "32", "--epochs", "2", "--seeds", "1",
         "--batch-size", "16", "--workers", "1", "--methods", "control", "--model-option",
         "width=4", "--quiet"]
SPEC = build_spec(overrides=TINY)
RUN = "control/seed0"


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    """``done/`` holds a finished run, ``half/`` one stopped after epoch 1 of 2."""
    root = tmp_path_factory.mktemp("runs")
    execute(SPEC, "control", 0, root / "done")

    def stop(done: int, total: int) -> None:
        if done == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        execute(SPEC, "control", 0, root / "half", progress=stop)
    return root


@pytest.fixture
def runs(template, tmp_path) -> Path:
    shutil.copytree(template, tmp_path / "runs")
    return tmp_path / "runs"


def _rewrite(path: Path, header_changes: dict, state_changes: dict | None = None) -> None:
    """Re-write a checkpoint with a crafted header (and payload) but valid checksums."""
    state = {**load_checkpoint(path), **(state_changes or {})}
    buffer = io.BytesIO()
    torch.save(state, buffer)
    payload = buffer.getvalue()
    header = {"format": 2, "run_key": SPEC.run_key("control"), "seed": 0, "epoch": 1,
              "bytes": len(payload), "sha256": hashlib.sha256(payload).hexdigest()}
    header = {k: v for k, v in {**header, **header_changes}.items() if v is not None}
    path.write_bytes(MAGIC + json.dumps(header).encode() + b"\n" + payload)


def _drop_model(path: Path) -> None:
    state = load_checkpoint(path)
    del state["model"]
    save_checkpoint(path, state)


def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-20] ^= 0xFF
    path.write_bytes(bytes(data))


def _old_format(path: Path) -> None:
    torch.save(load_checkpoint(path), path)  # a plain torch.save, as convdrop wrote before


CHECKPOINT_DAMAGE: dict[str, tuple[Callable[[Path], None], str]] = {
    "empty": (lambda p: p.write_bytes(b""), "empty"),
    "truncated": (lambda p: p.write_bytes(p.read_bytes()[:-100]), "truncated"),
    "garbage": (lambda p: p.write_bytes(b"\x00\x17garbage" * 50), "not a convdrop checkpoint"),
    "bit flip": (_flip, "does not match its checksum"),
    "old format": (_old_format, "not a convdrop checkpoint"),
    "epoch 100": (lambda p: _rewrite(p, {"epoch": 100}, {"epoch": 100}),
                  "epoch 100 is not an epoch of this 2-epoch run"),
    "epoch -5": (lambda p: _rewrite(p, {"epoch": -5}, {"epoch": -5}), "epoch -5 is not an"),
    "epoch 1.0": (lambda p: _rewrite(p, {"epoch": 1.0}), "epoch 1.0 is not an"),
    "header and payload disagree": (lambda p: _rewrite(p, {"epoch": 2}), "payload epoch 1"),
    "no run_key": (lambda p: _rewrite(p, {"run_key": None}), "with run_key None"),
    "other settings": (lambda p: _rewrite(p, {"run_key": "0" * 16}), "with run_key '0000"),
    "format 3": (lambda p: _rewrite(p, {"format": 3}), "format 3, but this convdrop reads"),
    "no model": (lambda p: _drop_model(p), "no model in it"),
}


METRICS_DAMAGE: dict[str, tuple[Callable[[Path], None], str]] = {
    "deleted": (lambda p: p.unlink(), "holds 0 rows"),
    "header only": (lambda p: p.write_text(p.read_text().splitlines()[0] + "\n"), "holds 0 rows"),
    "garbage row": (lambda p: p.write_text(p.read_text() + "x,y,z\n"), "line 3 is not a row"),
    "extra rows": (lambda p: p.write_text(p.read_text() + "\n".join(
        p.read_text().splitlines()[1:] * 2) + "\n"), "holds 3 rows"),
    "not UTF-8": (lambda p: p.write_bytes(b"\xff\xfe\x00"), "cannot read it"),
    "cut mid-row": (lambda p: p.write_text(p.read_text()[:-5]), "its last line is cut short"),
    "a value short": (lambda p: p.write_text(p.read_text().rsplit(",", 1)[0] + "\n"),
                      "line 2 is not a row of numbers with an epoch and a value in every"),
    "a value too many": (lambda p: p.write_text(p.read_text().rstrip("\n") + ",7\n"),
                         "line 2 is not a row"),
}


def _assert_names(err: pytest.ExceptionInfo, path: Path, fragment: str) -> None:
    text = str(err.value)
    assert str(path) in text and fragment in text, text
    assert "\n" not in text
    assert f"--restart {RUN}" in text or "delete" in text


@pytest.mark.parametrize("kind", sorted(CHECKPOINT_DAMAGE))
def test_a_damaged_checkpoint_is_one_line_naming_it(runs, kind):
    damage, fragment = CHECKPOINT_DAMAGE[kind]
    paths = RunPaths.of(runs / "half", "control", 0)
    damage(paths.checkpoint)
    with pytest.raises(RunFolderError) as err:
        check_run(SPEC, "control", 0, runs / "half")
    _assert_names(err, paths.checkpoint, fragment)


@pytest.mark.parametrize("kind", sorted(METRICS_DAMAGE))
def test_metrics_that_do_not_match_the_checkpoint_are_refused(runs, kind):
    damage, fragment = METRICS_DAMAGE[kind]
    paths = RunPaths.of(runs / "half", "control", 0)
    damage(paths.metrics)
    with pytest.raises(RunFolderError) as err:
        check_run(SPEC, "control", 0, runs / "half")
    _assert_names(err, paths.metrics, fragment)


RESULT_DAMAGE: dict[str, tuple[Callable[[RunPaths], None], str, str]] = {
    "garbage": (lambda p: p.result.write_text("{not json"), "result", "not valid JSON"),
    "a list": (lambda p: p.result.write_text("[]"), "result", "expected a JSON object, got list"),
    "no keys": (lambda p: p.result.write_text("{}"), "result", "no method, seed, run_key"),
    "deep": (lambda p: p.result.write_text("[" * 100_000 + "]" * 100_000), "result",
             "nested too deeply"),
    "metrics deleted": (lambda p: p.metrics.unlink(), "metrics", "holds 0 rows"),
    "metrics header only": (lambda p: p.metrics.write_text("epoch,train_loss\n"), "metrics",
                            "holds 0 rows"),
    "metrics short": (lambda p: p.metrics.write_text(
        "\n".join(p.metrics.read_text().splitlines()[:2]) + "\n"), "metrics", "holds 1 rows"),
}


@pytest.mark.parametrize("kind", sorted(RESULT_DAMAGE))
def test_a_finished_run_is_never_ok_with_a_broken_result_or_missing_epochs(runs, kind):
    damage, which, fragment = RESULT_DAMAGE[kind]
    paths = RunPaths.of(runs / "done", "control", 0)
    damage(paths)
    with pytest.raises(RunFolderError) as err:
        execute(SPEC, "control", 0, runs / "done")
    _assert_names(err, getattr(paths, which), fragment)


def test_a_checkpoint_of_another_model_shape_does_not_fit(runs):
    paths = RunPaths.of(runs / "half", "control", 0)
    state = load_checkpoint(paths.checkpoint)
    first = next(iter(state["model"]))
    state["model"][first] = torch.zeros(3)
    save_checkpoint(paths.checkpoint, state)
    with pytest.raises(RunFolderError) as err:
        execute(SPEC, "control", 0, runs / "half")
    _assert_names(err, paths.checkpoint, "does not fit this run's model")


def test_a_resumed_run_keeps_integer_epochs_and_matches_the_straight_one(runs):
    resumed = execute(SPEC, "control", 0, runs / "half")
    straight = json.loads(RunPaths.of(runs / "done", "control", 0).result.read_text())
    assert {k: v for k, v in resumed.items() if k != "seconds"} == {
        k: v for k, v in straight.items() if k not in ("seconds", "sha256")}
    lines = RunPaths.of(runs / "half", "control", 0).metrics.read_text().splitlines()
    assert [line.split(",")[0] for line in lines] == ["epoch", "1", "2"]


def test_the_cli_refuses_a_damaged_run_without_writing_and_restart_retrains_it(runs, capsys):
    out = runs / "half"
    paths = RunPaths.of(out, "control", 0)
    paths.checkpoint.write_bytes(b"")
    code = main(["compare", *FLAGS, "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and str(paths.checkpoint) in err and f"--restart {RUN}" in err
    assert len(err.splitlines()) == 1 and not (out / "config.json").exists()
    assert main(["compare", *FLAGS, "--out", str(out), "--restart", RUN]) == 0
    assert json.loads(paths.result.read_text())["status"] == "ok"
    assert main(["compare", *FLAGS, "--out", str(out), "--restart", "magic/seed0"]) == 2
    assert "--restart 'magic/seed0': not a run of this comparison" in capsys.readouterr().err


def test_train_names_a_broken_checkpoint_and_restart_trains_it_afresh(runs, capsys):
    out = runs / "half"
    paths = RunPaths.of(out, "control", 0)
    _flip(paths.checkpoint)
    argv = ["train", "--data", "synthetic", "--train-size", "32", "--epochs", "2",
            "--batch-size", "16", "--method", "control", "--model-option", "width=4",
            "--quiet", "--out", str(out)]
    assert main([*argv, "--resume"]) == 2
    err = capsys.readouterr().err.strip()
    assert str(paths.checkpoint) in err and f"--restart {RUN}" in err
    assert main([*argv, "--restart", "dropout/seed0"]) == 2
    assert main([*argv, "--restart"]) == 0
    assert json.loads(paths.result.read_text())["status"] == "ok"
