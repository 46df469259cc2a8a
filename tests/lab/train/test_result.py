"""What a run's result.json must hold (convdrop.lab.train.result), on hand-made results.

The files themselves, edited in a real ``--out``, are in tests/lab/runs/test_faults_results.py.
"""

from __future__ import annotations

import math

import pytest

from convdrop.lab.train.result import digest, result_problem, sealed

METRICS = b"epoch,val_acc\n1,0.5\n2,0.75\n"
ROWS = [{"epoch": 1, "val_acc": 0.5}, {"epoch": 2, "val_acc": 0.75}]
OK = {"method": "control", "seed": 1, "run_key": "k", "epochs": 2, "world_size": 1,
      "status": "ok", "error": None, "test_acc": 0.7, "test_loss": 0.9, "train_acc": 1.0,
      "train_loss": 0.0, "val_acc": 0.75, "seconds": 3.5}
FAILED = {"method": "control", "seed": 1, "run_key": "k", "epochs": 2, "world_size": 1,
          "status": "failed", "error": "non-finite training loss nan at epoch 1",
          "seconds": 1.0}


def problem(result: dict, metrics: bytes = METRICS, rows: list | None = None) -> str | None:
    return result_problem(result, method="control", seed=1, epochs=2,
                          rows=ROWS if rows is None else rows, metrics=metrics)


@pytest.mark.parametrize("result", [OK, FAILED])
def test_a_sealed_result_of_this_run_passes(result):
    assert problem(sealed(result, METRICS)) is None


@pytest.mark.parametrize(("changes", "fragment"), [
    ({"test_acc": 1.0000001}, "test_acc 1.0000001 is outside [0, 1]"),
    ({"test_acc": -0.0001}, "is outside [0, 1]"),
    ({"test_acc": math.nan}, "test_acc nan is outside"),
    ({"train_loss": -1}, "train_loss -1 is outside [0, inf]"),
    ({"test_loss": [1]}, "test_loss [1] is not a number"),
    ({"seed": True}, "seed True, but it lies in the folder of seed 1"),
    ({"seed": 1.0}, "seed 1.0, but"),
    ({"epochs": 2.0}, "epochs 2.0, but this run has 2"),
    ({"world_size": 0}, "world_size 0 is not a count of processes"),
    ({"seconds": "fast"}, "seconds 'fast' is not a number"),
    ({"val_acc": 0.5}, "val_acc 0.5, but the last row of metrics.csv says 0.75"),
    ({"status": "OK"}, "status 'OK' is not one of ok, failed"),
])
def test_each_wrong_field_is_named(changes, fragment):
    text = problem({**sealed(OK, METRICS), **changes})  # named before the checksum is read
    assert text is not None and fragment in text, text


def test_a_failed_result_needs_its_reason():
    assert "error None is not a reason" in problem(sealed({**FAILED, "error": None}, METRICS))


def test_the_checksum_binds_the_result_to_its_metrics():
    sealed_ok = sealed(OK, METRICS)
    other_metrics = METRICS.replace(b"1,0.5", b"1,0.25")  # another run's first epoch
    assert "does not match" in problem(sealed_ok, metrics=other_metrics)
    assert "does not match" in problem({**sealed_ok, "extra": math.nan})  # not even JSON
    assert digest(sealed_ok, METRICS) == sealed_ok["sha256"]  # the checksum is left out


def test_an_ok_result_without_metrics_rows_names_the_difference():
    assert "the last row of metrics.csv says None" in problem(sealed(OK, b""), b"", rows=[])
