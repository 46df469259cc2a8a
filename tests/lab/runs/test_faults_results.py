"""Edited finished runs: a rerun trusts a result only if it is its run's, and writes nothing first.

A finished ``compare`` (control, seeds 0 and 1) is made once; each test edits a copy the
way a hostile or unlucky user would (a score set to a string, null, true or 1e308, a key
deleted, another status or method, another run's file copied over, a plausible score that
disagrees with its metrics, a ``metrics.csv`` cut in the middle of its last row) and
reruns the same command: one line naming the file and ``--restart``, nothing printed
before it, and every file of ``--out`` (``results.json`` included) byte-for-byte as it was.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from convdrop.cli import main

from conftest import files

FLAGS = ["--data", "synthetic", "--train-size", "32", "--epochs", "2", "--seeds", "2",
         "--batch-size", "16", "--methods", "control", "--model-option", "width=4",
         "--workers", "1", "--quiet"]


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("finished") / "out"
    assert main(["compare", *FLAGS, "--out", str(out)]) == 0
    return out


def _result(out: Path, seed: int) -> Path:
    return out / "runs" / "control" / f"seed{seed}" / "result.json"


def _edit(key: str, value: object) -> Callable[[Path], int]:
    def edit(out: Path) -> int:
        path = _result(out, 1)
        result = json.loads(path.read_text())
        result[key] = value
        path.write_text(json.dumps(result, indent=2))
        return 1
    return edit


def _delete(key: str) -> Callable[[Path], int]:
    def edit(out: Path) -> int:
        path = _result(out, 0)
        result = json.loads(path.read_text())
        del result[key]
        path.write_text(json.dumps(result))
        return 0
    return edit


def _copy_seed0_over_seed1(out: Path) -> int:
    shutil.copyfile(_result(out, 0), _result(out, 1))
    return 1


def _cut_metrics(out: Path) -> int:
    metrics = _result(out, 0).with_name("metrics.csv")
    text = metrics.read_text()
    metrics.write_text(text[: text.rindex(",")])  # the last row loses its last value
    return 0


EDITS: dict[str, tuple[Callable[[Path], int], str, str]] = {
    "a string": (_edit("test_acc", "high"), "result", "test_acc 'high' is not a number"),
    "null": (_edit("test_acc", None), "result", "test_acc None is not a number"),
    "true": (_edit("test_acc", True), "result", "test_acc True is not a number"),
    "1e308": (_edit("test_acc", 1e308), "result", "test_acc 1e+308 is outside [0, 1]"),
    "infinity": (_edit("test_loss", float("inf")), "result", "test_loss inf is outside"),
    "deleted": (_delete("test_acc"), "result", "no test_acc in an ok result"),
    "another status": (_edit("status", "done"), "result", "status 'done' is not one of ok"),
    "another method": (_edit("method", "dropout"), "result",
                       "method 'dropout', but it lies in the folder of method 'control'"),
    "seed 0 copied": (_copy_seed0_over_seed1, "result",
                      "seed 0, but it lies in the folder of seed 1"),
    "seed 7": (_edit("seed", 7), "result", "seed 7, but it lies in the folder of seed 1"),
    "a plausible score": (_edit("test_acc", 0.123), "result",
                          "its sha256 does not match its fields and metrics.csv"),
    "epochs 1": (_edit("epochs", 1), "result", "epochs 1, but this run has 2"),
    "checksum deleted": (_delete("sha256"), "result", "no sha256 in it"),
    "metrics cut mid-row": (_cut_metrics, "metrics.csv", "its last line is cut short"),
}


@pytest.mark.parametrize("kind", sorted(EDITS))
def test_an_edited_result_is_refused_in_one_line_before_anything_is_written(
        finished, tmp_path, capsys, kind):
    out = tmp_path / "out"
    shutil.copytree(finished, out)
    edit, name, fragment = EDITS[kind]
    seed = edit(out)
    before = files(out)
    capsys.readouterr()
    assert main(["compare", *FLAGS, "--out", str(out)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""  # refused before the header line
    err = captured.err.strip()
    assert len(err.splitlines()) == 1, err
    path = _result(out, seed).with_name("result.json" if name == "result" else name)
    assert str(path) in err and fragment in err and f"--restart control/seed{seed}" in err, err
    assert files(out) == before  # results.json, config.json and report.md untouched


def test_restart_trains_the_edited_run_again_and_the_report_is_whole(finished, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(finished, out)
    _edit("test_acc", 0.123)(out)
    assert main(["compare", *FLAGS, "--out", str(out), "--restart", "control/seed1"]) == 0
    assert _without_time(out) == _without_time(finished)  # seed 1 trained again, the same


def _without_time(out: Path) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "seconds"}
            for r in json.loads((out / "results.json").read_text())]
