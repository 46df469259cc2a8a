"""The regime in words: each kind's verdict line with its numbers, the report section, and
the thresholds as the README states them."""

from __future__ import annotations

import re
from pathlib import Path

from convdrop.lab.report import regime
from convdrop.lab.report.regime import THRESHOLDS, Thresholds, diagnose
from convdrop.lab.report.verdicts import HEADERS, cells, section, thresholds_text, verdict

README = Path(__file__).resolve().parents[3] / "README.md"


def run(train: list[float], val: list[float]) -> list[dict]:
    return [{"epoch": e + 1, "train_eval_acc": t, "val_acc": v}
            for e, (t, v) in enumerate(zip(train, val))]


def test_an_overfitting_single_seed_in_one_exact_line():
    train = [0.5, 0.7, 0.9] + [1.0] * 9
    val = [0.5, 0.68, 0.8, 0.82, 0.82, 0.815, 0.81, 0.81, 0.805, 0.80, 0.80, 0.80]
    line = verdict(diagnose("control", [run(train, val)]))
    # Over epochs 8-12 the least-squares slope is -0.25 pp per epoch: -1.0 pp in 4 steps.
    assert line == (
        "control overfits from epoch 3 (gap +20.0 pp at epoch 12; validation -1.0 pp over the "
        "last 5 epochs; train 100.0 %; validation peaked at epoch 4 (82.0 %); 1 seed: no "
        "intervals): a regime where regularization can help")


def test_each_kind_leads_with_its_deciding_number():
    rising = diagnose("m", [run([0.6] * 8, [0.4 + 0.02 * e for e in range(8)])] * 2)
    assert verdict(rising).startswith("m is still rising (validation +8.0 pp [+8.0, +8.0] "
                                      "over the last 5 epochs; gap +6.0 pp [+6.0, +6.0]")
    assert "train longer" in verdict(rising)
    split = diagnose("m", [run([0.9], [0.88]), run([0.9], [0.6])])
    assert verdict(split).startswith("m's seeds disagree (1 of 2 seeds with a gap of 5 pp or "
                                     "more; gap +16.0 pp [")
    assert "1 epoch: no trend" in verdict(split) and "run more seeds" in verdict(split)
    fits = diagnose("m", [run([1.0, 1.0], [0.99, 0.99])])
    assert verdict(fits).startswith("m fits without overfitting (gap +1.0 pp at epoch 2")
    under = diagnose("m", [run([0.4], [0.38])])
    assert verdict(under).startswith("m underfits (gap +2.0 pp at epoch 1; 1 epoch: no trend; "
                                     "train 40.0 %; 1 seed: no intervals)")
    assert "regularizers are expected to cost accuracy" in verdict(under)
    assert verdict(diagnose("m", [])) == "m: no finished run to read a learning curve from"
    old = diagnose("m", [[{"epoch": 1, "train_acc": 0.4, "val_acc": 0.38}]])
    assert "training accuracy from train_acc, measured while training" in verdict(old)


def test_the_section_has_the_control_first_and_every_method_in_the_table():
    found = {"control": diagnose("control", [run([1.0] * 3, [0.8] * 3)]),
             "dropout": diagnose("dropout", [run([0.9] * 3, [0.85] * 3)])}
    text = section(found)
    assert text.startswith("control overfits from epoch 1 (gap +20.0 pp")
    assert "| dropout | overfits | +5.0 | +0.0 | 90.0 | 85.0 (1) | 1 |" in text
    assert thresholds_text() in text and len(cells(found["control"])) == len(HEADERS)
    assert section({"dropout": found["dropout"]}).startswith("No method named 'control' ran")


def test_the_thresholds_text_follows_the_dataclass():
    text = thresholds_text(Thresholds(overfit_gap=0.1, rising_gain=0.02, saturated=0.95))
    assert "a gap of 10 pp or more" in text and "a mean rise of 2 pp or more" in text
    assert "at 95 % or more" in text


def test_the_readme_states_the_thresholds_in_use():
    readme = " ".join(README.read_text(encoding="utf-8").split())
    section_text = readme[readme.index("### Is there anything to regularize?"):]
    for value in (f"{100 * THRESHOLDS.overfit_gap:g} pp", f"{100 * THRESHOLDS.rising_gain:g} pp",
                  f"{100 * THRESHOLDS.saturated:g} %",
                  f"{100 * THRESHOLDS.window_fraction:g} %", f"at least {THRESHOLDS.min_window}"):
        assert value in section_text, value
    assert re.search(r"--require-overfit", section_text)
    assert set(regime.KINDS) - {regime.NO_RUNS} <= {k for k in regime.KINDS if k in readme}
