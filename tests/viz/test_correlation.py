"""Tests for ``convdrop.viz.correlation``: reconstructors on hand-made maps, the study, the CLI."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

from convdrop.viz.correlation import (
    FEATURE_CHANNELS,
    correlation_study,
    feature_maps,
    reconstruct_linear,
    reconstruct_mean,
    recoverability,
    render_table,
)
from convdrop.viz.correlation_plot import draw_study
from convdrop.viz.masks import default_image

from conftest import PNG_SIGNATURE


@pytest.fixture(scope="module")
def digit() -> torch.Tensor:
    return default_image()


def _mask(shape: tuple[int, ...], *points: tuple[int, ...]) -> torch.Tensor:
    mask = torch.zeros(shape, dtype=torch.bool)
    for point in points:
        mask[point] = True
    return mask


def _ramp(height: int = 12, width: int = 12) -> torch.Tensor:
    i, j = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    return 0.3 * i.double() - 0.7 * j.double() + 2.0


def test_mean_on_a_3x3_grid_by_hand():
    x = torch.arange(1.0, 10.0).view(3, 3)  # 1 2 3 / 4 5 6 / 7 8 9
    out = reconstruct_mean(x, _mask((3, 3), (1, 1), (0, 0)))
    assert out[1, 1] == pytest.approx((2 + 3 + 4 + 6 + 7 + 8 + 9) / 7)  # (0, 0) is dropped too
    assert out[0, 0] == pytest.approx((2 + 4) / 2)  # kept neighbours only, none outside the map
    keep = ~_mask((3, 3), (1, 1), (0, 0))
    assert torch.equal(out[keep], x.double()[keep])


def test_mean_falls_back_to_the_kept_mean():
    x = torch.arange(25.0).view(5, 5)
    mask = torch.zeros(5, 5, dtype=torch.bool)
    mask[1:4, 1:4] = True  # (2, 2) has no kept neighbour
    out = reconstruct_mean(x, mask)
    assert out[2, 2] == pytest.approx(float(x[~mask].mean()))


@pytest.mark.parametrize("reconstruct", [reconstruct_mean, reconstruct_linear])
def test_constant_map_is_recovered_exactly(reconstruct):
    x = torch.full((2, 16, 16), 0.37)
    mask = torch.rand(2, 16, 16, generator=torch.Generator().manual_seed(0)) < 0.3
    mask[0, 4:11, 4:11] = True  # a block, so some units have no kept neighbour
    assert torch.allclose(reconstruct(x, mask), x.double(), atol=1e-12)
    assert recoverability(x, mask, "mean") == 1.0


def test_linear_fit_recovers_a_ramp_where_neighbours_exist():
    x = _ramp()
    isolated = [(2, 2), (2, 7), (5, 4), (8, 9), (9, 2)]  # interior, no two adjacent
    mask = _mask(x.shape, *isolated)
    out = reconstruct_linear(x, mask)
    for point in isolated:
        assert float(out[point]) == pytest.approx(float(x[point]), abs=1e-8)
    assert recoverability(x, mask, "linear") == pytest.approx(1.0, abs=1e-9)


def test_linear_fit_beats_mean_on_a_ramp_edge():
    x = _ramp()
    mask = _mask(x.shape, (0, 5), (5, 0), (3, 3), (3, 4))  # border units and a pair
    assert recoverability(x, mask, "linear") > recoverability(x, mask, "mean")


def test_linear_fit_without_fitting_rows_is_the_mean():
    x = torch.rand(4, 4, generator=torch.Generator().manual_seed(1))
    mask = _mask((4, 4), (0, 0), (3, 3))  # no unit has 8 kept in-map neighbours
    assert torch.equal(reconstruct_linear(x, mask), reconstruct_mean(x, mask))


def test_reconstructors_keep_kept_units_and_accept_both_ranks():
    x = torch.rand(3, 10, 10, generator=torch.Generator().manual_seed(2))
    mask = torch.rand(3, 10, 10, generator=torch.Generator().manual_seed(3)) < 0.2
    for reconstruct in (reconstruct_mean, reconstruct_linear):
        out = reconstruct(x, mask)
        assert out.shape == x.shape and out.dtype == torch.float64
        assert torch.equal(out[~mask], x.double()[~mask])
        assert torch.equal(reconstruct(x[1], mask[1]), out[1])  # channels are independent


def test_white_noise_is_not_recoverable():
    x = torch.rand(1, 64, 64, generator=torch.Generator().manual_seed(0))
    mask = torch.rand(1, 64, 64, generator=torch.Generator().manual_seed(1)) < 0.1
    assert recoverability(x, mask, "mean") < 0.0  # noisier than the map's mean level
    assert abs(recoverability(x, mask, "linear")) < 0.1


def test_recoverability_edge_cases():
    x = torch.rand(5, 5)
    assert math.isnan(recoverability(x, torch.zeros(5, 5, dtype=torch.bool)))
    with pytest.raises(ValueError, match="method"):
        recoverability(x, _mask((5, 5), (2, 2)), "median")
    with pytest.raises(ValueError, match="shape"):
        recoverability(x, torch.zeros(4, 5, dtype=torch.bool))


def test_feature_maps_are_fixed_and_nonnegative(digit):
    a, b = feature_maps(digit), feature_maps(digit)
    assert a.shape == (FEATURE_CHANNELS, 64, 64) and torch.equal(a, b)
    assert float(a.min()) >= 0.0 and float(a.max()) > 0.0


@pytest.mark.parametrize("source", ["image", "features"])
@pytest.mark.parametrize("seed", [0, 1])
def test_dropblock_holes_are_less_recoverable_on_the_digit(digit, source, seed):
    """p = 0.1, block 7, 64x64 digit.

    Over 100 trials per source (seed 123), dropout's best score was >= 0.989 in every
    trial and DropBlock's best <= 0.57, mean 0.46-0.47 (std 0.02-0.04). So the mean gap
    must exceed 0.3 and every DropBlock trial must score below every dropout trial by 0.2.
    """
    study = correlation_study(digit, 0.1, 7, trials=8, seed=seed, source=source)
    _, drop, _ = study.best("dropout")
    _, block, _ = study.best("drop_block")
    assert drop - block > 0.3
    worst_drop = torch.maximum(*(study.scores["dropout", r] for r in ("mean", "linear"))).min()
    best_block = torch.maximum(*(study.scores["drop_block", r] for r in ("mean", "linear"))).max()
    assert float(worst_drop - best_block) > 0.2
    assert "much harder to fill" in study.conclusion()


def test_study_is_reproducible(digit):
    """Same seed: identical masks; scores equal to 1e-12 (LAPACK's least squares is not
    bitwise deterministic: repeated solves differ by ~1e-16). Other seed: other masks."""
    a, b = (correlation_study(digit, 0.1, 7, 3, seed=5) for _ in range(2))
    c = correlation_study(digit, 0.1, 7, 3, seed=6)
    for method in ("dropout", "drop_block"):
        assert torch.equal(a.examples[method].mask, b.examples[method].mask)
        assert not torch.equal(a.examples[method].mask, c.examples[method].mask)
        assert torch.equal(a.dropped[method], b.dropped[method])
    for key in a.scores:
        assert torch.allclose(a.scores[key], b.scores[key], rtol=0, atol=1e-12)
        assert (a.scores[key] - c.scores[key]).abs().max() > 1e-6


def test_conclusion_follows_the_numbers(digit):
    study = correlation_study(digit, 0.1, 7, 4, seed=0)
    swapped = replace(study, scores={
        (m, r): study.scores["drop_block" if m == "dropout" else "dropout", r]
        for m, r in study.scores})
    assert "easier ones to fill" in swapped.conclusion()
    same = replace(study, scores={(m, r): study.scores["dropout", r] for m, r in study.scores})
    assert "no clear difference" in same.conclusion()
    drop = round(100 * study.best("dropout")[1])
    assert f"dropout's dropped units are {drop} %" in study.conclusion()


def test_table_lists_methods_and_reconstructors(digit):
    table = render_table(correlation_study(digit, 0.1, 7, 2, seed=0))
    lines = table.splitlines()
    assert "| method | dropped | neighbour mean | 3x3 linear fit |" in lines
    assert any(line.startswith("| dropout |") for line in lines)
    assert any(line.startswith("| DropBlock (block 7) |") for line in lines)
    assert "over 2 trials" in table and "±" in table


def test_draw_study_writes_png(tmp_path, digit):
    out = draw_study(correlation_study(digit, 0.1, 7, 2, 0, source="features"),
                     tmp_path / "c.png", dpi=30)
    assert out.read_bytes()[:8] == PNG_SIGNATURE
    assert [f.name for f in tmp_path.iterdir()] == ["c.png"]
