"""convdrop.lab.runs.shared_out: the token a node must see in --out, and progress from files."""

from __future__ import annotations

import pytest

from convdrop import _io
from convdrop.errors import OutputError
from convdrop.lab.runs.shared_out import TOKEN_NAME, Meter, check_token, remove_token, write_token
from convdrop.lab.train.store import RunPaths


def test_a_node_that_sees_the_token_passes(tmp_path):
    token = write_token(tmp_path)
    assert len(token) == 32 and (tmp_path / TOKEN_NAME).read_text() == token + "\n"
    check_token(tmp_path, token, where="node a (10.0.0.1)", run="control/seed0")
    assert write_token(tmp_path) != token  # a fresh one per command
    remove_token(tmp_path)
    remove_token(tmp_path)  # already gone: fine
    assert not (tmp_path / TOKEN_NAME).exists()


def test_a_node_without_the_folder_or_with_another_token_fails_in_one_line(tmp_path):
    with pytest.raises(OutputError) as caught:
        check_token(tmp_path / "nowhere", "abc", where="node b (10.0.0.2)", run="control/seed1")
    message = str(caught.value)
    assert "\n" not in message and message.startswith("run control/seed1 on node b (10.0.0.2): ")
    assert f"cannot read {tmp_path / 'nowhere' / TOKEN_NAME} (No such file or directory)" in message
    assert f"--out {tmp_path / 'nowhere'} must be the same folder on every node" in message
    write_token(tmp_path)  # a stale copy of the folder: another command's token
    with pytest.raises(OutputError, match="holds another command's token"):
        check_token(tmp_path, "abc", where="node b", run="control/seed1")


def _rows(paths: RunPaths, count: int) -> None:
    """A metrics.csv of ``count`` epochs, replaced as the trainer does (a new file)."""
    paths.root.mkdir(parents=True, exist_ok=True)
    text = "epoch,val_acc\n" + "".join(f"{e},0.5\n" for e in range(count))
    _io.write_text(paths.metrics, text)


def test_the_meter_counts_epochs_once_across_resumes_and_retries(tmp_path):
    runs = [("control", 0), ("control", 1)]
    meter = Meter(tmp_path, runs, epochs=3)
    assert meter.advance(set()) == 0  # nothing written yet
    a, b = (RunPaths.of(tmp_path, m, s) for m, s in runs)
    _rows(a, 2)
    assert meter.advance(set()) == 2
    _rows(a, 1)  # a retry resumed from an earlier checkpoint: never counted back or twice
    assert meter.advance(set()) == 0
    _rows(a, 3)
    assert meter.advance(set()) == 1  # epochs 1 and 2 were counted before the dip
    _rows(b, 5)  # more rows than epochs: capped
    assert meter.advance(set()) == 3
    assert meter.advance({0, 1}) == 0  # finished runs: every epoch, already counted
    assert meter.counted == 6
