"""A sweep end to end on tiny synthetic data: runs in worker processes, every output,
and resume (a second run of the same sweep trains nothing); the figures from fake stats."""

from __future__ import annotations

import csv
import json

import numpy as np

from convdrop.lab.report.stats import summarize
from convdrop.lab.sweep import runner as sweep_runner
from convdrop.lab.sweep.expand import build_sweep
from convdrop.lab.sweep.plots import dose_response, heatmap
from convdrop.lab.sweep.runner import run_sweep
from convdrop.lab.sweep.stats import analyse

from conftest import assert_png

TINY = {"data": "synthetic", "train_size": 24, "epochs": 1, "seeds": 2, "batch_size": 12,
        "image_size": 16, "model_options": {"width": 4}}


def test_sweep_runs_in_workers_writes_everything_and_resumes_without_training(tmp_path):
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
    assert text.index("## Regime") < text.index("## Verdict")  # the control's regime first
    assert set(stats.regimes) == {"control", "dropblock_scheduled-p0.2"}
    assert stats.regimes["control"].seeds == 2 and text.count("| control | ") == 2
    assert_png(tmp_path / "dose_response.png")
    rows = list(csv.DictReader((tmp_path / "sweep.csv").open()))
    assert [r["setting"] for r in rows] == ["control", "dropblock_scheduled-p0.2"]
    assert float(rows[1]["drop_budget"]) > 0.1  # DropBlock after every conv block
    assert "[methods.\"dropblock_scheduled-p0.2\"]" in (tmp_path / "sweep_spec.toml").read_text()
    saved = json.loads((tmp_path / "sweep.json").read_text())
    assert saved["settings"]["p"] == [0.2] and len(saved["points"]) == 2

    def stamps():
        return {p: p.stat().st_mtime_ns for p in (tmp_path / "runs").rglob("*") if p.is_file()}

    before, first = stamps(), report.read_text()
    again = build_sweep(overrides={**TINY, "workers": 2}, sweep_overrides={"p": [0.2]})
    _, second = run_sweep(again, tmp_path, show_progress=False)
    assert stamps() == before  # no run folder was touched: nothing trained again
    assert second.best == stats.best
    assert "- wall time:" in first and "- versions: convdrop" in first

    def without_wall_time(text):
        return [line for line in text.splitlines()
                if not line.startswith(("- wall time", "- finished"))]

    assert without_wall_time(report.read_text()) == without_wall_time(first)


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


def test_adaptive_spends_seeds_where_the_intervals_overlap(tmp_path, monkeypatch):
    """Successive halving with fabricated runs (no training): far settings stop after the
    first round, the best, its close rival and the control go on to every seed; a rerun
    replays the same rounds."""
    truth = {"control": 0.90, "dropblock_scheduled-p0.1": 0.930,
             "dropblock_scheduled-p0.2": 0.929, "dropblock_scheduled-p0.3": 0.80}
    calls = []

    def fake_grid(spec, out, show_progress=True, executor=None):
        calls.append((tuple(spec.methods), spec.seeds))
        rng = np.random.default_rng(0)
        noise = rng.standard_normal((len(truth), 100)) * 0.003
        return [{"method": m, "seed": k, "status": "ok", "train_acc": 1.0,
                 "test_acc": truth[m] + noise[list(truth).index(m), k]}
                for m in spec.methods for k in range(spec.seeds)]

    monkeypatch.setattr(sweep_runner.runner, "run_grid", fake_grid)
    sweep = build_sweep(overrides={**TINY, "seeds": 8}, probe=lambda s, m: 0.1,
                        sweep_overrides={"p": [0.1, 0.2, 0.3], "adaptive": True})
    assert sweep_runner.rungs(2, 8) == [2, 4, 8] and sweep_runner.rungs(3, 5) == [3, 5]
    report, stats = sweep_runner.run_sweep(sweep, tmp_path, show_progress=False)
    everything = tuple(sweep.spec.methods)
    kept = ("control", "dropblock_scheduled-p0.1", "dropblock_scheduled-p0.2")
    assert calls == [(everything, 2), (kept, 4), (kept, 8)]
    assert stats.point("dropblock_scheduled-p0.3").test.n == 2
    assert stats.point("dropblock_scheduled-p0.1").test.n == 8
    assert "adaptive round 3: 3 settings up to 8 seeds" in report.read_text()
    calls.clear()
    sweep_runner.run_sweep(sweep, tmp_path, show_progress=False)
    assert calls == [(everything, 2), (kept, 4), (kept, 8)]
