"""Hostile input to the runner: names that lead outside --out, --out problems, odd paths.

Each refusal is one line naming the key (or ``--out``) and the value, and nothing is
written anywhere: the test's whole folder is the same before and after.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from convdrop.cli import main
from convdrop.errors import clip_values

from conftest import FLAGS, files


def _refused(capsys, argv: list[str]) -> str:
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1, err
    return err


def _bad_names(tmp_path: Path) -> list[str]:
    return [str(tmp_path / "elsewhere"), "../../x", "a/b", ".hidden", "..", "a\\b", "", "x" * 101]


@pytest.mark.parametrize("index", range(8))
def test_a_bad_experiment_name_is_a_spec_error_and_writes_nothing(tmp_path, capsys, monkeypatch,
                                                                   index):
    name = _bad_names(tmp_path)[index]
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "report.md").write_text("mine")
    spec = tmp_path / "spec.toml"
    spec.write_text(f"[experiment]\nname = {json.dumps(name)}\n")
    monkeypatch.chdir(cwd)
    before = files(tmp_path)
    err = _refused(capsys, ["compare", "--spec", str(spec), *FLAGS])  # no --out: results/<name>
    assert "experiment.name" in err and f"(got {name!r})" in err
    assert files(tmp_path) == before


@pytest.mark.parametrize("index", range(8))
def test_a_bad_method_name_is_a_spec_error_and_writes_nothing(tmp_path, capsys, index):
    name = _bad_names(tmp_path)[index]
    quoted = json.dumps(name)
    spec = tmp_path / "spec.toml"
    spec.write_text(f"[experiment]\nmethods = [\"control\", {quoted}]\n"
                    f"[methods.{quoted}]\nbase = \"dropblock\"\n")
    out = tmp_path / "out"
    before = files(tmp_path)
    flags = [f for f in FLAGS if f != "control,dropblock" and f != "--methods"]
    err = _refused(capsys, ["compare", "--spec", str(spec), *flags, "--out", str(out)])
    assert "experiment.methods.1" in err and f"(got {name!r})" in err
    assert files(tmp_path) == before and not out.exists()


def test_a_method_flag_with_a_separator_is_refused(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:  # argparse checks the flag against the field
        main(["compare", *FLAGS, "--methods", "control,../x", "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert exit_.value.code == 2 and "--methods" in err and "'../x'" in err
    assert not (tmp_path / "out").exists()


def test_a_run_folder_linked_outside_out_is_refused(tmp_path, capsys):
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    (out / "runs").mkdir(parents=True)
    elsewhere.mkdir()
    (out / "runs" / "control").symlink_to(elsewhere)
    err = _refused(capsys, ["compare", *FLAGS, "--workers", "1", "--out", str(out)])
    assert "outside --out" in err and str(elsewhere) in err
    assert not list(elsewhere.iterdir())


def test_an_undecodable_folder_path_is_refused_before_training(tmp_path, capsys):
    folder = os.fsdecode(bytes(tmp_path) + b"/data\xff")
    err = _refused(capsys, ["compare", *FLAGS, "--data", f"folder:{folder}", "--out",
                            str(tmp_path / "out")])
    assert "experiment.data: not valid UTF-8" in err
    assert not (tmp_path / "out").exists()


def test_a_deeply_nested_spec_file_is_one_line(tmp_path, capsys):
    spec = tmp_path / "deep.toml"
    spec.write_text("[experiment]\nname = " + "[" * 50_000 + "]" * 50_000 + "\n")
    err = _refused(capsys, ["compare", "--spec", str(spec), "--out", str(tmp_path / "out")])
    assert "nested too deeply" in err and str(spec) in err


# --- --out problems, for every command that writes one -------------------------------------

COMMANDS = {
    "compare": ["compare", *FLAGS, "--workers", "1"],
    "train": ["train", "--data", "synthetic", "--train-size", "32", "--epochs", "1",
              "--method", "control", "--quiet"],
    "masks": ["masks"],
    "correlation": ["correlation", "--trials", "1"],
}


def _out_in_the_way(tmp_path: Path, problem: str, command: str) -> tuple[Path, str]:
    afile = tmp_path / "a-file"
    afile.write_text("keep me")
    if problem == "existing file":
        if command in ("masks", "correlation"):  # their --out is a file: a folder is in the way
            return tmp_path, "is a folder"
        return afile, "is a file, not a folder"
    return afile / "sub" / ("x.png" if command in ("masks", "correlation") else "out"), (
        "a part of that path is a file" if command in ("compare", "train") else "Not a directory")


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize("problem", ["existing file", "path under a file"])
def test_out_in_the_way_is_one_line_naming_out(tmp_path, capsys, command, problem):
    out, fragment = _out_in_the_way(tmp_path, problem, command)
    before = files(tmp_path)
    err = _refused(capsys, [*COMMANDS[command], "--out", str(out)])
    assert f"--out {out}" in err and fragment in err
    assert files(tmp_path) == before


@pytest.fixture
def read_only(tmp_path) -> Path:
    """A read-only folder: a read-only tmpfs (root ignores mode bits), or chmod 555."""
    folder = tmp_path / "ro"
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(folder)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"root cannot be denied a write without a read-only mount ({done.stderr})")
    yield folder
    subprocess.run(["umount", str(folder)], check=False)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_read_only_out_is_one_line_naming_out(read_only, capsys, command):
    out = read_only / ("x.png" if command in ("masks", "correlation") else "out")
    err = _refused(capsys, [*COMMANDS[command], "--out", str(out)])
    assert f"--out {out}" in err and ("Read-only" in err or "Permission denied" in err)


def test_a_missing_parent_is_created(tmp_path, capsys):
    out = tmp_path / "a" / "b" / "masks.png"
    assert main(["masks", "--out", str(out)]) == 0 and out.is_file()


# --- paths the system cannot use at all ---------------------------------------------------

# 4,517 characters in parts of 250: longer than Linux's PATH_MAX (4,096), every part legal
TOO_LONG = "a" * 250 + ("/" + "b" * 250) * 17
WRITERS = {
    "compare": COMMANDS["compare"],
    "train": COMMANDS["train"],
    "sweep": ["sweep", "--data", "synthetic", "--train-size", "32", "--epochs", "1", "--seeds",
              "1", "--method", "dropout", "--p", "0.1", "--model-option", "width=4",
              "--workers", "1", "--quiet"],
}


def _unusable(capsys, argv: list[str]) -> str:
    err = _refused(capsys, argv)
    assert capsys.readouterr().out == "" and "Traceback" not in err
    return err


@pytest.mark.parametrize("command", sorted(WRITERS))
@pytest.mark.parametrize("problem", ["a symlink loop", "longer than 4,096 characters"])
def test_an_out_the_system_cannot_use_is_one_line_naming_out(tmp_path, capsys, monkeypatch,
                                                             command, problem):
    monkeypatch.chdir(tmp_path)
    if problem == "a symlink loop":
        os.symlink("loop-b", "loop-a")
        os.symlink("loop-a", "loop-b")
        out, fragment = "loop-a", "(a loop of symbolic links)"
    else:
        out, fragment = TOO_LONG, "(File name too long: 4,517 characters)"
    before = files(tmp_path)
    err = _unusable(capsys, [*WRITERS[command], "--out", out])
    expected = f"--out {out}: cannot use that path {fragment}; choose another --out"
    assert err == f"convdrop {command}: error: {clip_values(expected)}"  # long values cut
    assert files(tmp_path) == before


def test_a_loop_below_out_is_one_line_naming_the_run_folder(tmp_path, capsys):
    runs = tmp_path / "out" / "runs"
    runs.mkdir(parents=True)
    os.symlink("loop", runs / "control")
    os.symlink("control", runs / "loop")
    err = _unusable(capsys, [*WRITERS["compare"], "--out", str(tmp_path / "out")])
    assert f"--out {tmp_path / 'out'}: {runs / 'control' / 'seed0'}: cannot use that path " \
           "(a loop of symbolic links)" in err


@pytest.mark.parametrize("argv, fragment", [
    (["--data", f"folder:{TOO_LONG}"], clip_values(f"dataset spec 'folder:{TOO_LONG}': its path "
                                                   "cannot be used (File name too long: 4,517 "
                                                   "characters)")),
    (["--data", f"cifar10:{'c' * 300}"], "its path cannot be used (File name too long"),
    (["--spec", TOO_LONG], clip_values(f"spec file '{TOO_LONG}' cannot be used (File name too "
                                       "long")),
], ids=["folder", "cifar", "spec"])
def test_a_data_or_spec_path_too_long_is_one_line_naming_it(tmp_path, capsys, monkeypatch,
                                                            argv, fragment):
    monkeypatch.chdir(tmp_path)
    err = _unusable(capsys, ["compare", "--methods", "control", *argv])
    assert fragment in err
    assert files(tmp_path) == {}
