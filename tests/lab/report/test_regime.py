"""The regime diagnosis on fabricated learning curves, one per regime, with its numbers.

Each curve is written out by hand (or by a line with seeded noise), so the expected
gap, rise, peak and onset are known; intervals are checked against scipy's t quantile
directly. One epoch, one seed, missing columns and empty runs are covered too.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from convdrop.lab.report import regime
from convdrop.lab.report.regime import THRESHOLDS, Thresholds, diagnose, diagnose_all, gap_growth


def run(train: list[float], val: list[float], key: str = "train_eval_acc") -> list[dict]:
    """metrics.csv rows of one run: epochs 1..len(val)."""
    return [{"epoch": e + 1, key: t, "train_acc": t - 0.1, "val_acc": v}
            for e, (t, v) in enumerate(zip(train, val))]


def t_half(values: list[float]) -> float:
    """Half-width of the 95 % t-interval of the mean, from scipy's quantile."""
    x = np.asarray(values)
    return float(stats.t.ppf(0.975, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size))


def plateau(level: float, epochs: int, start: float = 0.3, reach: int = 5) -> list[float]:
    """Rises linearly from ``start`` to ``level`` by epoch ``reach``, then stays there."""
    return [start + (level - start) * min(e, reach) / reach for e in range(1, epochs + 1)]


def test_underfitting_curves_have_a_small_gap_and_train_far_from_100():
    runs = [run(plateau(0.80 + d, 12), plateau(0.78 + d, 12)) for d in (-0.01, 0.0, 0.01)]
    r = diagnose("control", runs)
    assert r.kind == regime.UNDERFITS and not r.overfits
    assert r.gap.mean == pytest.approx(0.02) and r.gap.low == pytest.approx(0.02)  # equal gaps
    assert r.train.mean == pytest.approx(0.80)
    assert r.rise.mean == pytest.approx(0.0, abs=1e-12) and r.window == 5
    assert r.gap_from is None and r.peak_epoch == 5 and r.peak_val == pytest.approx(0.78)
    assert (r.seeds, r.epochs) == (3, 12)


def test_still_rising_curves_with_the_rise_and_its_interval():
    slopes = [0.004, 0.005, 0.006]  # validation gains per epoch, one seed each
    runs = [run([0.5 + 0.02 * e for e in range(20)], [0.4 + s * e for e in range(20)])
            for s in slopes]
    r = diagnose("control", runs)
    rises = [s * 4 for s in slopes]  # over the last 5 epochs: 4 steps of the line
    assert r.kind == regime.RISING and r.window == 5
    assert r.rise.mean == pytest.approx(0.02)
    assert r.rise.low == pytest.approx(0.02 - t_half(rises))
    assert r.rise.high == pytest.approx(0.02 + t_half(rises))
    assert r.peak_epoch == 20  # still climbing at the end
    # The train curve ends far above validation, but a rising curve is undertrained first.
    assert r.gap.mean > THRESHOLDS.overfit_gap


def overfitting(onset: int, epochs: int, seed: int) -> list[dict]:
    """Train and validation rise together to ``onset`` (train 2 pp above); then train climbs
    by 20 pp (capped at 100 %) while validation sags by 2 pp, both linearly to the end;
    seeded noise of 0.1 pp on validation."""
    rng = np.random.default_rng(seed)
    train, val = [], []
    for e in range(1, epochs + 1):
        together = 0.3 + 0.55 * min(e, onset) / onset
        late = max(0, e - onset) / (epochs - onset)
        train.append(min(1.0, together + 0.02 + 0.2 * late))
        val.append(together - 0.02 * late + rng.normal(0, 0.001))
    return run(train, val)


# After the onset the gap is 2 pp + 22 pp x (epoch - onset) / (epochs - onset): it passes
# 5 pp at 3/22 of the way, i.e. at epoch 6.2 -> 7 (onset 4) and 14.8 -> 15 (onset 14); the
# epochs either side miss 5 pp by 0.25 pp or more, 4 x the noise on the mean of three seeds.
@pytest.mark.parametrize(("onset", "epochs", "gap_from"), [(4, 20, 7), (14, 20, 15)])
def test_overfitting_early_and_late_say_from_which_epoch(onset, epochs, gap_from):
    runs = [overfitting(onset, epochs, seed) for seed in range(3)]
    r = diagnose("control", runs)
    assert r.kind == regime.OVERFITS and r.overfits
    gaps = [rows[-1]["train_eval_acc"] - rows[-1]["val_acc"] for rows in runs]
    assert r.gap.mean == pytest.approx(np.mean(gaps))
    assert r.gap.low == pytest.approx(np.mean(gaps) - t_half(gaps))
    assert r.gap_from == gap_from
    assert onset - 1 <= r.peak_epoch <= onset + 1  # noise of 0.3 pp on a 2 pp sag
    assert r.train.mean == pytest.approx(1.0)


def test_noisy_seeds_that_disagree_on_the_gap():
    gaps = (0.01, 0.02, 0.15)
    runs = [run(plateau(0.8 + g, 10), plateau(0.8, 10)) for g in gaps]
    r = diagnose("control", runs)
    assert r.kind == regime.DISAGREE
    assert r.disagreement == "1 of 3 seeds with a gap of 5 pp or more"
    assert r.gap.mean == pytest.approx(np.mean(gaps))
    assert r.gap.low < THRESHOLDS.overfit_gap <= r.gap.high


def test_seeds_that_disagree_on_whether_validation_still_rises():
    # Over the last 5 epochs: +5 pp, +0 pp, -1 pp; the mean (+1.33 pp) rises, its interval
    # reaches below 0.
    runs = [run([0.9] * 10, plateau(0.7, 5) + [0.7 + d * k / 4 for k in range(5)])
            for d in (0.05, 0.0, -0.01)]
    r = diagnose("control", runs)
    assert r.rise.mean == pytest.approx(0.04 / 3)
    assert r.kind == regime.DISAGREE and r.rise.low < 0
    assert r.disagreement == "1 of 3 seeds still rising by 1 pp or more"
    # Every seed rising by 1 pp or more (+1.2, +2, +5 pp) is still rising, though the
    # interval of three seeds reaches below 0.
    agree = [run([0.9] * 10, plateau(0.7, 5) + [0.7 + d * k / 4 for k in range(5)])
             for d in (0.012, 0.02, 0.05)]
    r = diagnose("control", agree)
    assert r.kind == regime.RISING and r.rise.low < 0


def test_a_learnt_training_set_with_a_large_gap_overfits_though_validation_creeps_up():
    val = plateau(0.6, 5) + [0.6 + 0.03 * k / 4 for k in range(5)]  # +3 pp at the end
    r = diagnose("control", [run([1.0] * 10, val)] * 3)
    assert r.rise.mean == pytest.approx(0.03) and r.train.mean == 1.0
    assert r.kind == regime.OVERFITS and r.gap.mean == pytest.approx(0.37)
    below = diagnose("control", [run([0.98] * 10, val)])
    assert below.kind == regime.RISING  # 98 % is not learnt: it may still be undertrained


def test_seeds_that_agree_beyond_noise_are_not_split():
    # Gaps 6, 7 and 9 pp: the interval reaches below 5 pp, but every seed is above it.
    runs = [run([1.0] * 10, [1.0 - g] * 10) for g in (0.06, 0.07, 0.09)]
    r = diagnose("control", runs)
    assert r.gap.low < THRESHOLDS.overfit_gap and r.kind == regime.OVERFITS
    assert r.gap_from == 1


def test_a_saturated_model_with_a_small_gap_fits():
    r = diagnose("control", [run(plateau(1.0, 10), plateau(0.98, 10))] * 2)
    assert r.kind == regime.FITS and r.gap.mean == pytest.approx(0.02)


def test_one_epoch_has_no_trend():
    r = diagnose("control", [run([0.40], [0.38]), run([0.42], [0.39])])
    assert r.kind == regime.UNDERFITS and r.window == 1 and r.epochs == 1
    assert math.isnan(r.rise.mean) and r.peak_epoch == 1
    assert r.gap.mean == pytest.approx(0.025)


def test_one_epoch_with_a_large_gap_overfits_from_epoch_1():
    r = diagnose("control", [run([0.9], [0.5])])
    assert r.kind == regime.OVERFITS and r.gap_from == 1 and math.isnan(r.rise.mean)


def test_a_single_seed_is_decided_by_its_point_estimates():
    r = diagnose("control", [overfitting(4, 20, 0)])
    assert r.kind == regime.OVERFITS and r.seeds == 1
    assert math.isnan(r.gap.low) and math.isnan(r.rise.low)
    rising = diagnose("control", [run([0.5] * 10, [0.4 + 0.01 * e for e in range(10)])])
    assert rising.kind == regime.RISING and rising.rise.mean == pytest.approx(0.04)


def test_runs_without_epochs_and_rows_without_numbers_are_left_out():
    assert diagnose("control", []).kind == regime.NO_RUNS
    assert diagnose("control", [[], []]).kind == regime.NO_RUNS
    rows = run([0.9, 0.95], [0.5, 0.5])
    rows.append({"epoch": 3, "train_eval_acc": math.nan, "val_acc": 0.5})
    r = diagnose("control", [rows, []])
    assert r.seeds == 1 and r.epochs == 2 and r.gap.mean == pytest.approx(0.45)


def test_runs_of_older_versions_fall_back_to_the_training_curve():
    rows = [{"epoch": 1, "train_acc": 0.9, "val_acc": 0.5}]
    r = diagnose("control", [rows])
    assert r.train_key == "train_acc" and r.gap.mean == pytest.approx(0.4)
    assert diagnose("control", [run([0.9], [0.5])]).train_key == "train_eval_acc"


def test_gap_growth_is_the_epochs_of_new_highs_merged():
    gaps = [0.0, 0.01, 0.02, 0.02, 0.01, 0.03, 0.04]
    rows = run([0.5 + g for g in gaps], [0.5] * len(gaps))
    assert gap_growth([rows]) == [(1, 3), (5, 7)]
    # A recovery after a dip (epoch 3 to 4) is not growth until it passes the old high.
    dip = [0.0, 0.03, 0.01, 0.02, 0.04]
    assert gap_growth([run([0.5 + g for g in dip], [0.5] * 5)]) == [(1, 2), (4, 5)]
    assert gap_growth([rows[:1]]) == [] and gap_growth([]) == []


def test_diagnose_all_keeps_the_order_and_the_thresholds_are_checked():
    found = diagnose_all({"b": [run([0.5], [0.5])], "a": []})
    assert list(found) == ["b", "a"] and found["a"].kind == regime.NO_RUNS
    strict = Thresholds(overfit_gap=0.5)
    assert diagnose("c", [run([0.9], [0.5])], strict).kind == regime.UNDERFITS
    with pytest.raises(ValueError, match="overfit_gap must be a number in"):
        Thresholds(overfit_gap=0.0)
    with pytest.raises(ValueError, match="min_window must be an int >= 1"):
        Thresholds(min_window=0)
    assert [THRESHOLDS.window(e) for e in (1, 3, 10, 30, 200)] == [1, 3, 5, 8, 50]
