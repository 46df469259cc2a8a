"""A sweep end to end on tiny synthetic data: runs in worker processes, every output,
and resume (a second run of the same sweep trains nothing); the figures from fake stats."""

from __future__ import annotations

import csv
import json

import numpy as np

from convdrop.lab import trainer
from convdrop.lab.stats import summarize
from convdrop.lab.sweep import build_sweep
from convdrop.lab.sweep_plots import dose_response, heatmap
from convdrop.lab.sweep_runner import run_sweep
from convdrop.lab.sweep_stats import analyse

from conftest import assert_png

TINY = {"data": "synthetic", "train_size": 24, "epochs": 1, "seeds": 2, "batch_size": 12,
        "image_size": 16, "model_options": {"width": 4}}


def test_sweep_runs_in_workers_writes_everything_and_resumes_without_training(
        tmp_path, monkeypatch):
    sweep = build_sweep(overrides={**TINY, "workers": 2}, sweep_overrides={"p": [0.2]})
    report, stats = run_sweep(sweep, tmp_path, show_progress=False)
    results = json.loads((tmp_path / "results.json").read_text())
    assert [(r["method"], r["seed"]) for r in results] == [
        ("control", 0), ("control", 1), ("dropblock_scheduled-p0.2", 0),
        ("dropblock_scheduled-p0.2", 1)]
    assert all(r["status"] == "ok" for r in results)
    text = report.read_text()
    for part in ("## Verdict", "## Best setting", "Statistically indistinguishable from it",
                 "| dropblock_scheduled-p0.2 | 0.2 |", "dose_response.png", "Welch"):
        assert part in text
    assert_png(tmp_path / "dose_response.png")
    rows = list(csv.DictReader((tmp_path / "sweep.csv").open()))
    assert [r["setting"] for r in rows] == ["control", "dropblock_scheduled-p0.2"]
    assert float(rows[1]["drop_budget"]) > 0.1  # DropBlock after every conv block
    saved = json.loads((tmp_path / "sweep.json").read_text())
    assert saved["settings"]["p"] == [0.2] and len(saved["points"]) == 2

    def no_training(*args, **kwargs):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(trainer.Trainer, "create", no_training)
    again = build_sweep(overrides={**TINY, "workers": 1}, sweep_overrides={"p": [0.2]})
    _, second = run_sweep(again, tmp_path, show_progress=False)
    assert second == stats


def test_curve_and_heatmap_from_fake_statistics(tmp_path):
    sweep = build_sweep(overrides={**TINY, "seeds": 3}, probe=lambda s, m: s.options_for(m).p
                        or 0.0, sweep_overrides={"p": [0.1, 0.2], "block_size": [3, 5]})
    rng = np.random.default_rng(0)
    runs = [{"method": name, "seed": k, "status": "ok", "test_acc": 0.8 + 0.01 * rng.random(),
             "train_acc": 0.9} for name in sweep.spec.methods for k in range(3)]
    stats = analyse(summarize(runs))
    rows = [(p, stats.point(p.name)) for p in sweep.points if not p.is_control]
    assert_png(dose_response(rows, stats.point("control"), tmp_path / "curve.png",
                             x_label="p"))
    assert_png(heatmap(rows, tmp_path / "heat.png", x_label="p", best=stats.best))
