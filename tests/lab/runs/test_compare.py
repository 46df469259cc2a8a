"""The runner end to end on synthetic data: presets, outputs, resume, failures, workers."""

from __future__ import annotations

import json

import pytest

from convdrop.cli import main
from convdrop.errors import RunFolderError
from convdrop.lab.runs.run import execute
from convdrop.lab.runs.runner import compare
from convdrop.lab.spec.experiment import build_spec
from convdrop.lab.spec.presets import PRESETS
from convdrop.lab.train import engine
from convdrop.lab.train.store import RunPaths, read_metrics

TINY = {"data": "synthetic", "train_size": 30, "epochs": 1, "seeds": 1, "batch_size": 16,
        "workers": 1}


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_every_preset_runs_with_small_settings(preset, tmp_path):
    spec = build_spec(preset=preset, overrides=TINY)
    report, _ = compare(spec, tmp_path, show_progress=False)
    results = json.loads((tmp_path / "results.json").read_text())
    assert [r["method"] for r in results] == spec.methods
    assert all(r["status"] == "ok" and 0 <= r["test_acc"] <= 1 for r in results)
    text = report.read_text()
    assert "learning_curves.png" in text and "| control |" in text
    for name in ("config.json", "summary.csv", "accuracy.png", "gap.png"):
        assert (tmp_path / name).stat().st_size > 0


def test_interrupted_run_resumes_to_the_same_result(tmp_path):
    spec = build_spec(overrides={**TINY, "epochs": 3, "methods": ["dropblock_scheduled"]})
    straight = execute(spec, "dropblock_scheduled", 0, tmp_path / "a")

    def stop_after_first_epoch(done: int, total: int) -> None:
        if done == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        execute(spec, "dropblock_scheduled", 0, tmp_path / "b", progress=stop_after_first_epoch)
    paths = RunPaths.of(tmp_path / "b", "dropblock_scheduled", 0)
    assert paths.checkpoint.is_file() and not paths.result.exists()
    assert len(read_metrics(paths)) == 1
    resumed = execute(spec, "dropblock_scheduled", 0, tmp_path / "b")
    rows = read_metrics(paths)
    assert [row["epoch"] for row in rows] == [1, 2, 3]
    assert rows[-1]["drop_rate"] == pytest.approx(0.1)  # the ramp continued, not restarted
    # Same seed, CPU, restored RNG states: identical to the uninterrupted run (1e-6).
    assert resumed["test_acc"] == pytest.approx(straight["test_acc"], abs=1e-6)
    assert resumed["train_loss"] == pytest.approx(straight["train_loss"], abs=1e-6)
    assert not paths.checkpoint.exists()


def test_finished_runs_are_skipped_and_other_settings_refused(tmp_path):
    spec = build_spec(overrides={**TINY, "methods": ["control"]})
    first = execute(spec, "control", 0, tmp_path)
    again = execute(spec, "control", 0, tmp_path)
    assert again == first  # read back, not retrained
    other = build_spec(overrides={**TINY, "methods": ["control"], "epochs": 2})
    with pytest.raises(RunFolderError, match="holds a run with other settings"):
        execute(other, "control", 0, tmp_path)


def test_a_nan_run_fails_alone(tmp_path, monkeypatch):
    real = engine.train_one_epoch

    def explode(model, *args, **kwargs):
        if model.__class__.__name__ == "SimpleCNN" and kwargs.get("drop_scheduler"):
            raise engine.NonFiniteLossError(float("nan"), 1, 0, 2)
        return real(model, *args, **kwargs)

    monkeypatch.setattr("convdrop.lab.train.trainer.train_one_epoch", explode)
    spec = build_spec(overrides={**TINY, "methods": ["control", "dropblock_scheduled"]})
    compare(spec, tmp_path, show_progress=False)
    results = {r["method"]: r for r in json.loads((tmp_path / "results.json").read_text())}
    assert results["control"]["status"] == "ok"
    assert results["dropblock_scheduled"]["status"] == "failed"
    assert "nan" in results["dropblock_scheduled"]["error"].lower()


def test_workers_run_in_parallel_processes(tmp_path):
    spec = build_spec(overrides={**TINY, "seeds": 2, "methods": ["control"], "workers": 2})
    compare(spec, tmp_path, show_progress=False)
    results = json.loads((tmp_path / "results.json").read_text())
    assert [r["seed"] for r in results] == [0, 1] and all(r["status"] == "ok" for r in results)


def test_cli_compare_and_errors(tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["compare", "--data", "synthetic", "--train-size", "30", "--epochs", "1",
                 "--seeds", "1", "--methods", "control,dropout", "--out", str(out), "--quiet"])
    assert code == 0 and (out / "report.md").is_file()
    assert "control" in capsys.readouterr().out
    missing = tmp_path / "nowhere"
    assert main(["compare", "--data", f"cifar10:{missing}", "--out", str(out / "x")]) == 2
    assert str(missing) in capsys.readouterr().err
    assert main(["compare", "--methods", "control,magic", "--out", str(out / "y")]) == 2
    assert "unknown method 'magic'" in capsys.readouterr().err
    assert main(["presets"]) == 0 and "block-size" in capsys.readouterr().out
