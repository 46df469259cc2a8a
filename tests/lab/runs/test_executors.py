"""convdrop.lab.runs.executors: which executor a command gets, and the flags it refuses."""

from __future__ import annotations

import pytest

from convdrop.cli import main
from convdrop.errors import ArgumentError
from convdrop.lab.runs.executors import (
    ExecutorSettings,
    LocalExecutor,
    PoolExecutor,
    chosen,
    default_executor,
    open_executor,
)
from convdrop.lab.spec.experiment import build_spec

ONE = build_spec(overrides={"data": "synthetic", "workers": 1, "methods": ["control"]})
TWO = ONE.model_copy(update={"workers": 2})


def test_the_default_is_the_pool_when_workers_say_so():
    assert chosen(ExecutorSettings(), ONE) == "local"
    assert chosen(ExecutorSettings(), TWO) == "pool"
    assert isinstance(default_executor(ONE), LocalExecutor)
    assert isinstance(default_executor(TWO), PoolExecutor) and default_executor(TWO).workers == 2
    with open_executor(ExecutorSettings(executor="pool"), TWO) as executor:
        assert executor.name == "pool" and "2 worker process(es)" in executor.describe()
    with open_executor(ExecutorSettings(), ONE) as executor:
        assert executor.name == "local" and executor.threads is None


def test_ray_takes_the_bundled_datas_workers_into_the_run_key_only():
    """workers 2 from the layers beneath is no error on Ray; --workers on the command is."""
    assert chosen(ExecutorSettings(executor="ray"), TWO) == "ray"
    with pytest.raises(ArgumentError, match="--workers 3: sizes the pool executor; on "
                       "--executor ray"):
        chosen(ExecutorSettings(executor="ray"), TWO, workers_flag=3)


@pytest.mark.parametrize(("settings", "spec", "expected"), [
    ({"executor": "local"}, TWO, "--workers 2: --executor local runs one run at a time"),
    ({"cpus_per_run": 2}, ONE, "--cpus-per-run 2.0: only --executor ray takes it "
                                "(the executor is local)"),
    ({"executor": "pool", "gpus_per_run": 0.5}, TWO, "--gpus-per-run 0.5: only --executor "
                                                    "ray takes it (the executor is pool)"),
    ({"ray_address": "auto"}, TWO, "--ray-address auto: only --executor ray takes it"),
])
def test_flags_that_do_not_fit_the_executor_are_one_line(settings, spec, expected):
    with pytest.raises(ArgumentError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        chosen(ExecutorSettings(**settings), spec)


def test_the_command_refuses_before_anything_is_written(capsys, tmp_path):
    out = tmp_path / "out"
    code = main(["compare", "--data", "synthetic", "--executor", "pool", "--ray-address",
                 "auto", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "--ray-address auto" in err
    code = main(["sweep", "--data", "synthetic", "--executor", "ray", "--workers", "2",
                 "--out", str(out)])
    assert code == 2 and "--workers 2: sizes the pool executor" in capsys.readouterr().err
    assert not out.exists()


def test_local_runs_one_at_a_time_and_reports_every_epoch(tmp_path):
    spec = ONE.model_copy(update={"train_size": 24, "epochs": 2, "seeds": 2, "batch_size": 12,
                                  "image_size": 16, "model_options": {"width": 4}})
    epochs, shown = [], []
    results = LocalExecutor().run(spec, [("control", 1), ("control", 0)], tmp_path,
                                  advance=epochs.append, show=shown.append)
    assert [(r["method"], r["seed"]) for r in results] == [("control", 1), ("control", 0)]
    assert shown == ["control seed 1", "control seed 0"]
    assert sum(epochs) == 4 and all(step >= 0 for step in epochs)
    again: list[int] = []  # finished runs count all their epochs at once
    LocalExecutor().run(spec, [("control", 0)], tmp_path, advance=again.append,
                        show=lambda text: None)
    assert again == [2]
