"""``convdrop`` errors: a user error is one line, a bug shows its traceback."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from convdrop import cli
from convdrop.cli import main
from convdrop.cli.checks import as_argument_error
from convdrop.errors import (
    ArgumentError,
    LaunchError,
    MissingFileError,
    RunFolderError,
    SpecError,
    UserError,
)
from convdrop.lab.runs import runner
from convdrop.ops import native as _native
from convdrop.ops import validate as v

from conftest import session_processes, wait_until_gone

FAST = ["--data", "synthetic", "--epochs", "1", "--seeds", "1", "--methods", "control",
        "--workers", "1", "--quiet"]


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def test_user_errors_keep_the_builtin_bases_library_callers_catch():
    for error in (ArgumentError, SpecError, RunFolderError, LaunchError):
        assert issubclass(error, UserError) and issubclass(error, ValueError)
    assert issubclass(MissingFileError, FileNotFoundError)


def test_a_user_error_is_one_line_without_traceback(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("CONVDROP_DEBUG", raising=False)
    argv = ["compare", *FAST, "--methods", "control,magic", "--out", str(tmp_path)]
    assert main(argv) == 2
    err = _lines(capsys.readouterr().err)
    assert len(err) == 1 and "Traceback" not in err[0]
    assert err[0].startswith("convdrop compare: error: experiment.methods: unknown method 'magic'")


def test_debug_shows_the_traceback_behind_a_user_error(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("CONVDROP_DEBUG", "1")
    assert main(["compare", *FAST, "--spec", str(tmp_path / "nope.toml")]) == 2
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "MissingFileError" in err
    assert _lines(err)[-1] == f"convdrop compare: error: spec file " \
                              f"{str(tmp_path / 'nope.toml')!r} does not exist"


def test_a_bug_shows_its_traceback_and_asks_for_a_report(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("CONVDROP_DEBUG", raising=False)

    def broken(*args, **kwargs):
        raise ValueError("an internal invariant broke")

    monkeypatch.setattr(runner, "compare", broken)
    assert main(["compare", *FAST, "--out", str(tmp_path)]) == cli.EXIT_BUG
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err
    assert "ValueError: an internal invariant broke" in err
    assert "in broken" in err  # the frame that raised
    last = _lines(err)[-1]
    assert last.startswith("convdrop compare: internal error: this is a bug") and "report" in last


def test_output_into_a_closed_pipe_ends_quietly_with_141():
    """``convdrop presets | head -1`` where head is gone before the first line is written."""
    reader, writer = os.pipe()
    os.close(reader)  # the reader is gone before convdrop writes a byte
    try:
        done = subprocess.run([sys.executable, "-m", "convdrop", "presets"], stdout=writer,
                              stderr=subprocess.PIPE, text=True, timeout=120)
    finally:
        os.close(writer)
    assert done.returncode == cli.EXIT_BROKEN_PIPE == 141
    assert done.stderr == ""


@pytest.mark.parametrize("argv", [["masks", "--p", "2"], ["bench", "--block-size", "0"],
                                  ["correlation", "--trials", "0"]])
def test_bad_flags_of_bench_masks_and_correlation_are_one_line_errors(
        tmp_path, capsys, monkeypatch, argv):
    monkeypatch.delenv("CONVDROP_DEBUG", raising=False)
    assert main([*argv, "--out", str(tmp_path / "x.png")] if argv[0] != "bench" else argv) == 2
    err = _lines(capsys.readouterr().err)
    assert len(err) == 1 and err[0].startswith(f"convdrop {argv[0]}: error: --")


@pytest.mark.parametrize("variable,value", [("CONVDROP_NATIVE", "maybe"),
                                            ("CONVDROP_BACKEND", "cuda")])
def test_a_bad_backend_variable_is_a_user_error(capsys, monkeypatch, variable, value):
    monkeypatch.setenv(variable, value)
    assert main(["explain"]) == 2
    err = _lines(capsys.readouterr().err)
    assert len(err) == 1 and f"{variable} must be one of" in err[0] and repr(value) in err[0]


def test_flag_checks_turn_value_errors_into_argument_errors():
    with pytest.raises(ArgumentError, match="--p must be a probability"):
        with as_argument_error():
            v.check_p(2.0, "--p")
    with pytest.raises(SpecError):  # a user error already: kept as it is
        with as_argument_error():
            raise SpecError("experiment.epochs")
    with pytest.raises(RuntimeError):  # anything else is still a bug
        with as_argument_error():
            raise RuntimeError("broken")


def test_a_bad_convdrop_native_is_a_value_error_of_the_ops():
    assert issubclass(_native.NativeSettingError, ValueError)
    assert not issubclass(_native.NativeSettingError, UserError)  # the cli maps it


@pytest.mark.parametrize("flag", ["--model", "--data"])
@pytest.mark.parametrize("prefix", ["", "timm:"])
def test_a_huge_value_gives_a_short_line(tmp_path, capsys, flag, prefix):
    """A 100,000-character value used to come back twice in a 200 KB line."""
    value = prefix + "x" * 100_000
    assert main(["compare", *FAST, flag, value, "--out", str(tmp_path / "out")]) == 2
    (line,) = _lines(capsys.readouterr().err)
    assert len(line) < 1000 and "characters)" in line and line.startswith("convdrop compare: ")


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
def test_quick_ctrl_c_presses_exit_130_and_leave_no_process(tmp_path):
    """Ctrl-C to the whole process group of ``compare --workers 2`` while its workers
    train, then again every 100 ms until it has exited: the first interrupts, the others
    are ignored while the workers stop and the process exits, and the status is 130 with
    one line (it was -2: a later KeyboardInterrupt escaping after the first was handled)."""
    out = tmp_path / "out"
    flags = ["--data", "synthetic", "--train-size", "64", "--epochs", "200", "--seeds", "1",
             "--methods", "control,dropout", "--model-option", "width=4", "--workers", "2",
             "--quiet", "--out", str(out)]
    runner_process = subprocess.Popen(
        [sys.executable, "-m", "convdrop", "compare", *flags], start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not list(out.glob("runs/*/seed0/metrics.csv")):  # a worker finished an epoch
            assert runner_process.poll() is None and time.monotonic() < deadline
            time.sleep(0.1)
        while runner_process.poll() is None and time.monotonic() < deadline:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(runner_process.pid, signal.SIGINT)
            time.sleep(0.1)
        _, err = runner_process.communicate(timeout=60)
        assert runner_process.returncode == 130, err
        assert _lines(err) == ["convdrop compare: interrupted"]
        assert wait_until_gone(runner_process.pid) == []
    finally:
        for pid in session_processes(runner_process.pid):
            os.kill(pid, signal.SIGKILL)
