"""Tests for convdrop.lab.report.plots: valid PNGs, seed statistics, edge cases, no pyplot state."""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest
from PIL import Image

from convdrop.lab.report import plots
from convdrop.lab.report.plots import (
    DPI,
    _annotate,
    _colours,
    _figure,
    _per_epoch,
    accuracy_bars,
    gap_bars,
    learning_curves,
)
from convdrop.lab.report.writer import summarize


def rows(shift: float, epochs: int = 3) -> list[dict]:
    return [{"epoch": e, "train_loss": 1.0 / e, "train_acc": 0.5 + 0.1 * e,
             "val_loss": 1.1 / e + shift, "val_acc": 0.45 + 0.1 * e + shift,
             "drop_rate": 0.05 * e, "lr": 0.1} for e in range(1, epochs + 1)]


def metrics(seeds: int = 2) -> dict[str, list[list[dict]]]:
    return {m: [rows(0.01 * s + d) for s in range(seeds)]
            for m, d in (("control", 0.0), ("dropblock", 0.02))}


def results(seeds: int = 2) -> list[dict]:
    return [{"method": m, "seed": s, "status": "ok", "test_acc": 0.8 + d + 0.01 * s,
             "train_acc": 0.9} for m, d in (("control", 0.0), ("dropblock", 0.02))
            for s in range(seeds)]


def assert_png(path, size: tuple[int, int] | None = None) -> None:
    with Image.open(path) as image:
        assert image.format == "PNG"
        image.verify()
    with Image.open(path) as image:
        if size is not None:
            assert image.size == size
        colours = image.convert("RGB").getcolors(maxcolors=1_000_000)
        assert len(colours) > 20  # something was drawn, not a blank canvas
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # no temp files


def test_learning_curves_png(tmp_path):
    out = learning_curves(metrics(), tmp_path / "curves.png")
    assert out == tmp_path / "curves.png"
    assert_png(out, (int(2 * 3.3 * DPI), int((2.6 + 0.6) * DPI)))  # dropblock, drop rate


def test_learning_curves_are_small_multiples_four_to_a_row(tmp_path):
    data = {f"m{i}": [rows(0.01 * i)] for i in range(9)} | {"control": [rows(0.0)]}
    out = learning_curves(data, tmp_path / "curves.png")  # 9 methods, then drop rate: 3 rows
    assert_png(out, (int(4 * 3.3 * DPI), int((3 * 2.6 + 0.6) * DPI)))


def test_learning_curves_mark_the_control_peak_and_shade_its_growing_gap(tmp_path,
                                                                         monkeypatch):
    drawn = []
    monkeypatch.setattr(plots, "_save", lambda figure, out: drawn.append(figure) or out)
    train, val = [0.5, 0.7, 0.9, 1.0, 1.0, 1.0], [0.5, 0.65, 0.75, 0.74, 0.73, 0.74]
    control = [{"epoch": e, "train_acc": t - 0.1, "train_eval_acc": t, "val_acc": v,
                "drop_rate": 0.0} for e, (t, v) in enumerate(zip(train, val), start=1)]
    other = [{**row, "val_acc": row["val_acc"] - 0.01} for row in control]
    learning_curves({"control": [control], "dropout": [other]}, tmp_path / "c.png")
    ax = drawn[0].axes[0]  # the dropout panel, with the control in grey
    dotted = [line.get_xdata() for line in ax.get_lines() if line.get_linestyle() == ":"]
    assert [list(x) for x in dotted] == [[3, 3]]  # validation peaked at epoch 3
    # The gap (0, 5, 15, 26, 27, 26 pp) grows from epoch 1 to 5, then falls: one span.
    spans = [(p.get_x(), p.get_x() + p.get_width()) for p in ax.patches
             if p.get_alpha() == 0.12]
    assert spans == [(1, 5)]
    labels = [t.get_text() for t in drawn[0].legends[0].get_texts()]
    assert "train (eval mode)" in labels and "control's gap grows" in labels
    assert "control's best validation (epoch 3)" in labels


def test_learning_curves_of_runs_that_all_failed_still_draw(tmp_path):
    out = learning_curves({"control": [[]], "dropout": [[], []]}, tmp_path / "curves.png")
    assert_png(out)


def test_a_star_sits_just_above_its_error_bar():
    figure, (ax,) = _figure(4, 3)
    ax.set_ylim(0, 100)
    summary = summarize(results(3))[1]
    summary = type(summary)(**{**summary.__dict__, "vs_control": type(summary.vs_control)(
        0.02, 0.01, 0.03, 5.0, 4.0, 0.001)})
    _annotate(ax, 0, summary, top=42.0, stars=True)
    (star,) = [text for text in ax.texts if text.get_text() == "*"]
    assert 42.0 <= star.get_position()[1] <= 43.0 and star.get_va() == "bottom"


@pytest.mark.parametrize("seeds", [1, 2])
def test_bars_png(tmp_path, seeds):
    summaries = summarize(results(seeds))
    assert_png(accuracy_bars(summaries, tmp_path / "acc" / "accuracy.png"))
    assert_png(gap_bars(summaries, tmp_path / "gap" / "gap.png"))


def test_single_seed_ragged_and_nan_curves(tmp_path):
    data = metrics(seeds=1)
    data["dropblock"].append(rows(0.0, epochs=1))  # a second seed that stopped after epoch 1
    data["control"][0][1]["val_loss"] = math.nan
    assert_png(learning_curves(data, tmp_path / "curves.png"))


def test_bars_with_failed_method_and_no_control(tmp_path):
    runs = [r for r in results() if r["method"] != "control"] + [
        {"method": "broken", "seed": 0, "status": "failed", "error": "nan loss"}]
    summaries = summarize(runs)
    assert summaries[1].n == 0 and all(s.vs_control is None for s in summaries)
    assert_png(accuracy_bars(summaries, tmp_path / "a" / "acc.png"))
    assert_png(gap_bars(summaries, tmp_path / "g" / "gap.png"))


def test_figure_width_grows_with_methods(tmp_path):
    many = [dict(r, method=f"method_with_a_long_name_{i}") for i in range(12)
            for r in results() if r["method"] == "control"]
    out = accuracy_bars(summarize(many), tmp_path / "acc.png")
    with Image.open(out) as image:
        assert image.size[0] == int((0.75 * 12 + 2.5) * DPI)


def test_empty_inputs_raise(tmp_path):
    with pytest.raises(ValueError, match="metrics must name at least one method"):
        learning_curves({}, tmp_path / "x.png")
    with pytest.raises(ValueError, match="summaries must hold at least one method"):
        accuracy_bars([], tmp_path / "x.png")
    assert list(tmp_path.iterdir()) == []


def test_per_epoch_mean_and_std_over_seeds():
    runs = [[{"epoch": 1, "val_acc": 0.5}, {"epoch": 2, "val_acc": 0.7}],
            [{"epoch": 1, "val_acc": 0.7}, {"epoch": 2, "val_acc": math.nan}]]
    epochs, mean, std = _per_epoch(runs, "val_acc")
    assert epochs.tolist() == [1, 2]
    assert mean == pytest.approx([0.6, 0.7])
    assert std == pytest.approx([np.std([0.5, 0.7], ddof=1), 0.0])  # one seed: no band


def test_colours_are_stable_and_control_is_black():
    first = _colours(["control", "a", "b"])
    assert first["control"] == "black" and first["a"] != first["b"]
    assert _colours(["a", "control", "b"]) == first
    many = _colours(["control", *(f"m{i}" for i in range(15))])
    assert len(set(many.values())) == 16 and "control" not in _colours(["a", "b"])


def test_no_pyplot_state(tmp_path):
    pyplot = sys.modules.get("matplotlib.pyplot")
    before = pyplot.get_fignums() if pyplot else None
    learning_curves(metrics(), tmp_path / "c.png")
    accuracy_bars(summarize(results()), tmp_path / "a.png")
    if pyplot is None:
        assert "matplotlib.pyplot" not in sys.modules
    else:
        assert pyplot.get_fignums() == before
