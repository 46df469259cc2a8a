"""Tests for convdrop.lab.report.writer: Welch statistics, summaries, tables and atomic files."""

from __future__ import annotations

import csv
import math
import warnings

import numpy as np
import pytest
from rich.console import Console
from scipy import stats

from convdrop.lab.report.regime import diagnose_all
from convdrop.lab.report.writer import (
    holm,
    render_rich,
    render_table,
    significance_sentence,
    summarize,
    welch,
    write_report,
    write_summary_csv,
)

NO_DIFFERENCE = "No method differs significantly from control (Welch t-test, α = 0.05)."


def run(method: str, seed: int, test: float | None, train: float | None = None,
        status: str = "ok", error: str | None = None) -> dict:
    return {"method": method, "seed": seed, "test_acc": test, "val_acc": test,
            "train_acc": train if train is not None else test, "status": status,
            "error": error}


def grid(effects: dict[str, float], seeds: int = 4, noise: float = 0.01, rng: int = 0) -> list:
    gen = np.random.default_rng(rng)
    return [run(m, s, 0.8 + d + noise * gen.standard_normal(), 0.95)
            for m, d in effects.items() for s in range(seeds)]


# ---------------------------------------------------------------- welch


@pytest.mark.parametrize("seed", range(6))
def test_welch_matches_scipy(seed):
    """t, df, p agree with scipy to 1e-9 relative; the CI is the t-quantile interval."""
    gen = np.random.default_rng(seed)
    a = gen.normal(0.80, 0.02, size=gen.integers(2, 8))
    b = gen.normal(0.79, 0.04, size=gen.integers(2, 8))
    result, ref = welch(a, b), stats.ttest_ind(a, b, equal_var=False)
    assert result.diff == pytest.approx(a.mean() - b.mean(), rel=1e-12)
    assert result.t == pytest.approx(ref.statistic, rel=1e-9)
    assert result.p_value == pytest.approx(ref.pvalue, rel=1e-9)
    assert result.df == pytest.approx(ref.df, rel=1e-9)
    ci = ref.confidence_interval(0.95)
    assert (result.ci_low, result.ci_high) == pytest.approx((ci.low, ci.high), rel=1e-9)


def test_welch_hand_computed():
    # a: mean 2, var 1; b: mean 0, var 4; se^2 = 1/3 + 4/3 = 5/3; df = (5/3)^2 / (1/18 + 16/18)
    w = welch([1.0, 2.0, 3.0], [-2.0, 0.0, 2.0])
    assert w.diff == 2.0
    assert w.t == pytest.approx(2 / math.sqrt(5 / 3), rel=1e-12)
    assert w.df == pytest.approx((25 / 9) / (17 / 18), rel=1e-12)
    half = stats.t.ppf(0.975, w.df) * math.sqrt(5 / 3)
    assert (w.ci_low, w.ci_high) == pytest.approx((2 - half, 2 + half), rel=1e-12)
    assert w.significant(0.5) and not w.significant(0.05)


def test_welch_small_n_and_constant_groups_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        small = welch([0.9], [0.8, 0.85])
        same = welch([0.1, 0.1, 0.1], [0.1, 0.1])  # means round differently: still exact
        apart = welch([0.9, 0.9], [0.8, 0.8, 0.8])
        empty = welch([], [0.8, 0.9])
    assert small.diff == pytest.approx(0.075) and math.isnan(small.p_value)
    assert math.isnan(small.ci_low) and not small.significant()
    assert (same.diff, same.p_value, same.t) == (0.0, 1.0, 0.0)
    assert apart.diff == pytest.approx(0.1) and apart.p_value == 0.0
    assert apart.ci_low == apart.ci_high == apart.diff and apart.t == math.inf
    assert math.isnan(empty.diff) and math.isnan(empty.p_value)


@pytest.mark.parametrize("confidence", [0.5, 0.9, 0.99])
def test_welch_one_constant_group_matches_scipy_without_warnings(confidence):
    """Only one group constant: scipy's answer, and none of its precision warnings."""
    a, b = [0.9, 0.9, 0.9], [0.8, 0.85, 0.83]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        w = welch(a, b, confidence=confidence)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = stats.ttest_ind(a, b, equal_var=False)
    ci = ref.confidence_interval(confidence_level=confidence)
    assert (w.t, w.df, w.p_value) == pytest.approx((ref.statistic, ref.df, ref.pvalue), rel=1e-12)
    assert (w.ci_low, w.ci_high) == pytest.approx((ci.low, ci.high), rel=1e-12)


def test_welch_rejects_non_finite():
    with pytest.raises(ValueError, match=r"a must hold finite numbers, got \[0.5, nan\]"):
        welch([0.5, math.nan], [0.5, 0.6])
    with pytest.raises(ValueError, match="confidence must be in"):
        welch([0.5, 0.6], [0.5, 0.6], confidence=95)


# ---------------------------------------------------------------- summarize


def test_summary_numbers_by_hand():
    results = [
        run("control", 0, 0.80, 0.90), run("control", 1, 0.82, 0.94),
        run("dropblock", 0, 0.85, 0.90), run("dropblock", 1, 0.87, 0.90),
        run("dropblock", 2, None, status="failed", error="NonFiniteLossError: nan"),
    ]
    control, dropblock = summarize(results)
    assert (control.method, control.n, control.n_failed, control.is_control) == (
        "control", 2, 0, True)
    assert control.test_mean == pytest.approx(0.81)
    assert control.test_std == pytest.approx(math.sqrt(2) * 0.01)
    assert control.gap_mean == pytest.approx(0.11) and control.vs_control is None
    assert (dropblock.n, dropblock.n_failed) == (2, 1)
    assert dropblock.gap_mean == pytest.approx(0.04)
    assert dropblock.gap_std == pytest.approx(math.sqrt(2) * 0.01)
    assert dropblock.vs_control.diff == pytest.approx(0.05)
    assert dropblock.seeds == (0, 1) and dropblock.failures == ((2, "NonFiniteLossError: nan"),)


def test_failed_runs_are_excluded_from_statistics():
    ok = [run("control", s, 0.8 + 0.01 * s) for s in range(3)]
    failed = [run("control", 9, 0.0, status="failed", error="boom")]
    assert summarize(ok + failed)[0].test_mean == summarize(ok)[0].test_mean
    assert summarize(ok + failed)[0].n_failed == 1


def test_order_single_seed_and_missing_control():
    results = [run("b", 0, 0.7), run("control", 0, 0.8), run("a", 0, 0.9), run("a", 1, 0.9)]
    summaries = summarize(results)
    assert [s.method for s in summaries] == ["b", "control", "a"]
    assert math.isnan(summaries[0].test_std) and math.isnan(summaries[0].vs_control.p_value)
    assert all(s.vs_control is None for s in summarize(results, control="absent"))


@pytest.mark.parametrize("bad,match", [
    (run("m", 0, 1.5), r"test_acc of run 'm' seed 0 must be an accuracy in \[0, 1\], got 1.5"),
    (run("m", 0, 0.5, status="done"), "status of run 'm' seed 0 must be one of"),
    (run("", 0, 0.5), "method must be a non-empty string, got ''"),
    ({"method": "m", "seed": 0, "status": "ok", "test_acc": 0.5}, "train_acc of run 'm'"),
])
def test_summarize_rejects_bad_runs(bad, match):
    with pytest.raises(ValueError, match=match):
        summarize([bad])


def test_summarize_rejects_duplicate_successes():
    with pytest.raises(ValueError, match="run 'm' seed 0 succeeded twice"):
        summarize([run("m", 0, 0.5), run("m", 0, 0.6)])


# ---------------------------------------------------------------- tables


def test_table_contains_the_numbers_and_marks_significance():
    summaries = summarize(grid({"control": 0.0, "dropblock": 0.08, "dropout": 0.0}, rng=1))
    table = render_table(summaries)
    dropblock, dropout = summaries[1:]
    assert dropblock.vs_control.p_value < 0.001 and dropout.vs_control.p_value > 0.5  # seeded
    assert f"| dropblock | 4 | {100 * dropblock.test_mean:.2f} ± {100 * dropblock.test_std:.2f}" \
        in table
    assert "| control | 4 |" in table and "reference" in table
    assert "< 0.001 *" in table and "* p < 0.05" in table
    assert "Significantly different from control (Welch t-test, α = 0.05): dropblock (+" in table
    assert NO_DIFFERENCE not in table
    dropout_row = next(line for line in table.splitlines() if line.startswith("| dropout"))
    assert "*" not in dropout_row


def test_significance_sentence_flips():
    same = summarize(grid({"control": 0.0, "a": 0.0, "b": 0.001}))
    assert all(not s.vs_control.significant() for s in same[1:])
    assert NO_DIFFERENCE in render_table(same)
    differs = summarize(grid({"control": 0.0, "a": 0.0, "b": -0.1}))
    sentence = significance_sentence(differs)
    assert sentence.startswith("Significantly different") and "a (" not in sentence
    assert "b (-10." in sentence and "2 comparisons, 0.1 false positives" in sentence


@pytest.mark.parametrize(("shifts", "ending"), [  # noise drawn with rng 1
    ({"a": -0.1, "b": 0.0}, "it stays significant after Holm's correction."),
    ({"a": -0.1, "b": -0.1}, "all stay significant after Holm's correction."),
    ({"a": -0.1, "b": -0.018, "c": 0.0}, "after Holm's correction only a stays significant."),
    ({"a": -0.1, "b": -0.1, "c": -0.012, "d": 0.0},
     "after Holm's correction only a, b stay significant."),
])
def test_the_holm_clause_agrees_with_its_subject(shifts, ending):
    sentence = significance_sentence(summarize(grid({"control": 0.0, **shifts}, rng=1)))
    assert sentence.endswith(ending), sentence


def test_sentence_edge_cases():
    one_seed = summarize([run("control", 0, 0.8), run("a", 0, 0.9)])
    assert significance_sentence(one_seed).startswith("Too few seeds to test")
    assert significance_sentence(summarize([run("a", 0, 0.9)])).startswith("No control")
    only = summarize([run("control", 0, 0.8)])
    assert significance_sentence(only) == "Only the control was run; there is nothing to compare."
    mixed = summarize(grid({"control": 0.0, "a": 0.0}) + [run("b", 0, 0.9)])
    assert significance_sentence(mixed) == NO_DIFFERENCE + (
        " 1 of 2 comparisons had too few seeds to test (n < 2).")


def test_text_table_is_aligned():
    summaries = summarize(grid({"control": 0.0, "dropblock_label_smoothing": 0.01}))
    lines = render_table(summaries, fmt="text").splitlines()
    assert lines[0].startswith("method") and set(lines[1]) <= {"-", " "}
    assert len(lines[0]) == len(lines[1]) == len(lines[2]) == len(lines[3])
    with pytest.raises(ValueError, match="fmt must be one of .* got 'html'"):
        render_table(summaries, fmt="html")


def test_rich_table_renders_brackets_literally():
    summaries = summarize([run("control", 0, 0.8), run("control", 1, 0.81), run("a", 0, 0.9)])
    console = Console(width=200, record=True)
    console.print(render_rich(summaries))
    text = console.export_text()
    assert "+9.50 [n/a]" in text and "Too few seeds" in text


# ---------------------------------------------------------------- files


def test_write_report(tmp_path):
    results = grid({"control": 0.0, "dropblock": 0.0}) + [
        run("dropblock", 7, None, status="failed", error="NonFiniteLossError: nan | step 3")]
    figure = tmp_path / "figures" / "learning curves.png"
    path = write_report(tmp_path / "out", summarize(results), title="Digits comparison",
                        config={"epochs": 3, "out": tmp_path}, figures={"Curves": figure},
                        notes=["Tiny run."])
    text = path.read_text(encoding="utf-8")
    assert path == tmp_path / "out" / "report.md"
    assert text.startswith("# Digits comparison\n")
    assert "![Curves](<../figures/learning curves.png>)" in text
    assert "| dropblock | 7 | NonFiniteLossError: nan \\| step 3 |" in text
    assert '"epochs": 3' in text and "```json" in text and "- Tiny run." in text
    assert "## How to read this" in text and "difference of means" in text
    assert sorted(p.name for p in path.parent.iterdir()) == ["report.md"]  # no temp files
    assert "## Regime" not in text  # only when regimes are given


def test_write_report_opens_with_the_regime(tmp_path):
    rows = [{"epoch": e, "train_eval_acc": 1.0, "val_acc": 0.7} for e in (1, 2)]
    regimes = diagnose_all({"control": [rows], "dropblock": [rows]})
    path = write_report(tmp_path, summarize(grid({"control": 0.0, "dropblock": 0.0})),
                        title="T", config={}, figures={}, regimes=regimes)
    text = path.read_text(encoding="utf-8")
    assert text.index("## Regime") < text.index("## Results")
    assert "\ncontrol overfits from epoch 1 (gap +30.0 pp at epoch 2;" in text
    assert "| dropblock | overfits | +30.0 |" in text


def test_write_summary_csv(tmp_path):
    summaries = summarize(grid({"control": 0.0, "a": 0.02}) + [run("b", 0, 0.5)])
    path = write_summary_csv(tmp_path / "summary.csv", summaries)
    rows = list(csv.DictReader(path.open()))
    assert [r["method"] for r in rows] == ["control", "a", "b"]
    assert rows[0]["p_value"] == "" and rows[2]["test_std"] == ""
    assert float(rows[1]["diff"]) == pytest.approx(summaries[1].vs_control.diff, rel=1e-15)
    assert [p.name for p in tmp_path.iterdir()] == ["summary.csv"]


def test_failed_write_keeps_the_old_report(tmp_path, monkeypatch):
    summaries = summarize([run("control", 0, 0.8)])
    path = write_report(tmp_path, summaries, title="Old", config={}, figures={})

    def fail(*args):
        raise OSError("disk full")

    monkeypatch.setattr("convdrop._io.os.replace", fail)
    with pytest.raises(OSError, match="disk full"):
        write_report(tmp_path, summaries, title="New", config={}, figures={})
    assert path.read_text().startswith("# Old") and list(tmp_path.iterdir()) == [path]


# ---------------------------------------------------------------- Holm, settings, provenance


def test_holm_by_hand_and_against_the_bonferroni_bound():
    assert holm([0.01, 0.04, math.nan, 0.03, 0.005]) == pytest.approx(
        [0.03, 0.06, math.nan, 0.06, 0.02], nan_ok=True)  # 4 tested: 4p, 3p, 2p, p, monotone
    p = np.random.default_rng(0).uniform(0, 0.2, 9).tolist()
    adjusted = holm(p)
    assert all(q >= x and q <= min(1.0, 9 * x) for q, x in zip(adjusted, p))
    assert holm([0.9, 0.8]) == [1.0, 1.0] and holm([]) == []


def test_table_shows_holm_beside_the_uncorrected_p():
    summaries = summarize(grid({"control": 0.0, "a": 0.05, "b": 0.0, "c": 0.0}))
    a = summaries[1]
    assert a.p_holm == pytest.approx(min(1.0, 3 * a.vs_control.p_value)) or a.p_holm > 0
    row = next(line for line in render_table(summaries).splitlines() if line.startswith("| a "))
    assert row.endswith(" *|") or row.endswith(" * |")
    assert "p (Holm)" in render_table(summaries)
    assert "Holm's correction" in significance_sentence(summaries)


def test_text_table_fits_80_columns_without_cutting_names():
    names = ["control", "dropout_p10", "dropout_p30", "dropblock_label_smoothing"]
    summaries = summarize(grid({name: 0.01 * i for i, name in enumerate(names)}))
    text = render_table(summaries, fmt="text", width=80)
    table = text.split("\n\n")[0].splitlines()
    assert max(map(len, text.splitlines())) <= 80
    for name in names:
        assert any(line.startswith(name + " ") for line in table), name
    wide = render_table(summaries, fmt="text", width=200).split("\n\n")[0].splitlines()
    assert len(wide) == 2 + len(names)  # one line a row where the width allows


def test_report_records_run_info_and_method_settings(tmp_path):
    settings = {"control": {"regularizer": None, "model": "simple_cnn"},
                "db": {"regularizer": "dropblock", "p": 0.1, "block_size": 5,
                       "schedule": "linear", "placement": "between_convs",
                       "model": "simple_cnn"}}
    path = write_report(tmp_path, summarize(grid({"control": 0.0, "db": 0.0})), title="T",
                        config={}, figures={}, run_info={"versions": "convdrop 0.1.0",
                                                         "wall time": "1 min 02 s"},
                        settings=settings)
    text = path.read_text(encoding="utf-8")
    assert "- versions: convdrop 0.1.0\n- wall time: 1 min 02 s\n" in text
    assert "## Methods" in text
    assert ("| db | dropblock | 0.1 | 5 | linear | between_convs | — | — | — | simple_cnn |"
            in text)


def test_sentence_when_every_run_failed():
    failed = summarize([run("control", 0, None, status="failed", error="nan"),
                        run("a", 0, None, status="failed", error="nan")])
    assert significance_sentence(failed).startswith("Every run failed")
