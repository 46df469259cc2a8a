"""The best-set statistics on seeded synthetic results with a known optimum (no training),
Holm's correction and the t-intervals, and the verdict written from them."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from convdrop.lab.report.stats import summarize
from convdrop.lab.sweep.expand import build_sweep
from convdrop.lab.sweep.report import point_rows, verdict
from convdrop.lab.sweep.stats import analyse, holm, t_interval

TINY = {"data": "synthetic", "train_size": 30, "epochs": 1, "seeds": 10, "workers": 1}
# True mean test accuracy per setting: the optimum is p = 0.1, block 5; p = 0.2, block 5 is
# 0.1 pp behind it (far inside the noise of 10 seeds at sd 0.3 pp), everything else is
# at least 1.5 pp behind (about 11 standard errors of a difference).
TRUTH = {
    "control": 0.900,
    "dropblock_scheduled-p0.05-b3": 0.895, "dropblock_scheduled-p0.1-b3": 0.905,
    "dropblock_scheduled-p0.2-b3": 0.910, "dropblock_scheduled-p0.3-b3": 0.890,
    "dropblock_scheduled-p0.05-b5": 0.915, "dropblock_scheduled-p0.1-b5": 0.930,
    "dropblock_scheduled-p0.2-b5": 0.929, "dropblock_scheduled-p0.3-b5": 0.900,
}
NOISE = 0.003  # sd of one seed's test accuracy


def fake_probe(spec, method):
    return spec.options_for(method).p or 0.0


def results(truth, seeds=10, seed=0, noise=NOISE):
    rng = np.random.default_rng(seed)
    return [{"method": name, "seed": k, "status": "ok", "test_acc": float(mean + noise * z),
             "train_acc": float(min(1.0, mean + 0.05 + noise * z))}
            for name, mean in truth.items() for k, z in enumerate(rng.standard_normal(seeds))]


@pytest.fixture(scope="module")
def grid():
    return build_sweep(overrides=TINY, probe=fake_probe, sweep_overrides={
        "p": [0.05, 0.1, 0.2, 0.3], "block_size": [3, 5]})


def test_holm_matches_the_hand_computation():
    assert holm([0.01, 0.04, 0.03, math.nan]) == pytest.approx([0.03, 0.06, 0.06, math.nan],
                                                               nan_ok=True)
    assert holm([0.5, 0.9]) == [1.0, 1.0] and holm([]) == []


def test_t_interval_is_scipys():
    xs = [0.91, 0.93, 0.92, 0.95]
    got = t_interval(xs)
    low, high = sps.t.interval(0.95, 3, loc=np.mean(xs), scale=sps.sem(xs))
    assert (got.low, got.high, got.n) == (pytest.approx(low), pytest.approx(high), 4)
    assert math.isnan(t_interval([0.9]).low) and t_interval([]).n == 0


def test_known_optimum_and_its_indistinguishable_set(grid):
    st = analyse(summarize(results(TRUTH)))
    assert st.best == "dropblock_scheduled-p0.1-b5"
    assert st.indistinguishable == ["dropblock_scheduled-p0.2-b5"]
    assert st.beats_control
    best = st.point(st.best)
    assert best.vs_control.diff == pytest.approx(0.03, abs=0.003)
    assert best.test.low < 0.930 < best.test.high
    text = verdict(grid, st)
    assert text.startswith("p = 0.1, block 5 is best (+3.")
    assert ("Within noise of it (Welch, Holm over 8 comparisons): p = 0.2; block 5 (1 of the 8 "
            "other settings)") in text
    header, rows = point_rows(grid, st)
    noise = {row[0]: row[-1] for row in rows}
    assert noise["dropblock_scheduled-p0.1-b5"] == "best"
    assert noise["dropblock_scheduled-p0.2-b5"] == "yes" and noise["control"] == "no"
    assert header[1:4] == ["p", "block", "drop budget"] and rows[6][3] == "0.1"


def test_selection_is_stable_across_noise_seeds():
    """Over 20 noise seeds the best is always one of the two true optima, the set holds the
    other in at least 18 (Holm keeps the family-wise error at or below 5 %), and the far
    settings never join it."""
    near = {"dropblock_scheduled-p0.1-b5", "dropblock_scheduled-p0.2-b5"}
    joined = 0
    for seed in range(20):
        st = analyse(summarize(results(TRUTH, seed=seed)))
        assert st.best in near
        joined += set(st.indistinguishable) == near - {st.best}
        assert set(st.indistinguishable) <= near
    assert joined >= 18


def test_no_effect_says_nothing_beats_no_regularization(grid):
    flat = {name: 0.9 for name in TRUTH}
    st = analyse(summarize(results(flat, noise=0.01)))
    assert not st.beats_control
    assert verdict(grid, st).startswith("No setting beats no regularization at this data size")


def test_one_seed_cannot_be_tested(grid):
    st = analyse(summarize(results(TRUTH, seeds=1)))
    assert st.best == "dropblock_scheduled-p0.1-b5" and st.indistinguishable == []
    assert "fewer than 2 seeds" in verdict(grid, st)


def test_failed_runs_are_left_out_and_every_failure_is_no_best(grid):
    runs = results(TRUTH)
    runs = [r if r["method"] != "dropblock_scheduled-p0.1-b5" else
            {**r, "status": "failed", "error": "nan loss"} for r in runs]
    st = analyse(summarize(runs))
    assert st.best == "dropblock_scheduled-p0.2-b5"
    assert st.point("dropblock_scheduled-p0.1-b5").n_failed == 10
    failed = [{**r, "status": "failed", "error": "x"} for r in results(TRUTH, seeds=1)]
    st = analyse(summarize(failed))
    assert st.best is None and verdict(grid, st).startswith("Every run failed")
