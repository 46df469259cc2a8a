"""Seed rates: the paper's formula and the exact calibration."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from convdrop.ops.gamma import (
    calibrated_gamma,
    clip_block,
    coverage_histogram,
    expected_drop_fraction,
    paper_gamma,
)


def brute_force_fraction(spatial: tuple[int, ...], block: tuple[int, ...], gamma: float) -> float:
    """Expected dropped fraction computed independently: coverage by convolution."""
    valid = [s - k + 1 for s, k in zip(spatial, block)]
    seeds = torch.ones((1, 1, *valid), dtype=torch.float64)
    conv_t = (F.conv_transpose1d, F.conv_transpose2d, F.conv_transpose3d)[len(spatial) - 1]
    cover = conv_t(seeds, torch.ones((1, 1, *block), dtype=torch.float64))
    return float(1 - ((1 - gamma) ** cover).mean())


MAPS = [(7,), (16,), (7, 7), (14, 14), (6, 9), (32, 32), (5, 6, 7)]
BLOCKS = [1, 2, 3, 5, 7, 9]


@pytest.mark.parametrize("spatial", MAPS)
@pytest.mark.parametrize("k", BLOCKS)
@pytest.mark.parametrize("p", [0.05, 0.1, 0.3, 0.8])
def test_calibrated_rate_gives_p_exactly(spatial, k, p):
    block = clip_block(spatial, (k,) * len(spatial))
    gamma = calibrated_gamma(spatial, block, p)
    # Tolerance 1e-9 absolute: bisection runs to 1e-15 in gamma.
    assert brute_force_fraction(spatial, block, gamma) == pytest.approx(p, abs=1e-9)


@pytest.mark.parametrize("block", [(2, 3), (3, 2), (4, 4), (1, 7)])
def test_calibrated_rate_rectangular_and_even(block):
    spatial = (10, 12)
    gamma = calibrated_gamma(spatial, block, 0.15)
    assert brute_force_fraction(spatial, block, gamma) == pytest.approx(0.15, abs=1e-9)


def test_block_one_is_dropout_rate():
    assert calibrated_gamma((9, 9), (1, 1), 0.3) == pytest.approx(0.3, abs=1e-12)


def test_block_equal_to_map_is_spatial_dropout_rate():
    # One valid position covering everything: the seed rate is p itself.
    assert calibrated_gamma((7, 7), (7, 7), 0.1) == pytest.approx(0.1, abs=1e-12)


def test_paper_formula_matches_the_paper():
    # gamma = p / k^2 * feat^2 / (feat - k + 1)^2
    assert paper_gamma((14, 14), (7, 7), 0.1) == pytest.approx(0.1 / 49 * 196 / 64)
    assert paper_gamma((7, 7), (7, 7), 0.5) == pytest.approx(0.5 / 49 * 49)
    assert paper_gamma((7, 7), (7, 7), 1.0) == pytest.approx(1.0)


def test_paper_formula_is_not_exact_but_close():
    """The paper's rate ignores overlaps: it under-drops slightly on a 14x14 map."""
    gamma = paper_gamma((14, 14), (7, 7), 0.1)
    fraction = expected_drop_fraction((14, 14), (7, 7), gamma)
    assert 0.08 < fraction < 0.1


def test_histogram_counts_every_unit():
    for spatial, k in itertools.product([(7, 7), (5, 8), (4, 5, 6)], [1, 3, 4]):
        block = clip_block(spatial, (k,) * len(spatial))
        values, counts = coverage_histogram(spatial, block)
        assert counts.sum() == math.prod(spatial)
        assert values.min() >= 1


def test_edges():
    assert calibrated_gamma((8, 8), (3, 3), 0.0) == 0.0
    assert calibrated_gamma((8, 8), (3, 3), 1.0) == 1.0
    assert clip_block((5, 9), (7, 7)) == (5, 7)
