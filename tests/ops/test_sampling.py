"""Fast sampling and painting: exact masks on small grids, statistics against the reference."""

from __future__ import annotations

import math

import pytest
import torch

from convdrop.ops.gamma import calibrated_gamma
from convdrop.ops.reference import paint_seed_grid, reference_block_mask
from convdrop.ops.sampling import (
    Geometry,
    count_dropped,
    dense_mask,
    fill_blocks_,
    geometric_gaps,
    sample_seeds,
)


def index_paint(seeds: torch.Tensor, geometry: Geometry) -> torch.Tensor:
    return fill_blocks_(torch.zeros(geometry.shape, dtype=torch.bool), seeds, geometry, True)


def grid(rows: list[str]) -> torch.Tensor:
    return torch.tensor([[ch == "#" for ch in row] for row in rows])


# Hand-made 5x5 maps; a seed id is the block's first corner in the valid region.
CASES = [
    # block 3 at corner (0, 0): rows/cols 0..2 (centre (1, 1))
    ((3, 3), [0], ["###..", "###..", "###..", ".....", "....."]),
    # block 3 at the last valid corner (2, 2): the bottom-right border
    ((3, 3), [8], [".....", ".....", "..###", "..###", "..###"]),
    # even block 2, valid region 4x4, corner (1, 2) = id 6; centre (1, 2), extra after it
    ((2, 2), [6], [".....", "..##.", "..##.", ".....", "....."]),
    # rectangular 2x3, valid region 4x3: corner (3, 2) = id 11
    ((2, 3), [11], [".....", ".....", ".....", "..###", "..###"]),
    # two overlapping blocks 3: corners (0, 0) and (1, 1) = ids 0 and 4
    ((3, 3), [0, 4], ["###..", "####.", "####.", ".###.", "....."]),
    # block larger than the map is clipped: one valid position, the whole map
    ((9, 9), [0], ["#####"] * 5),
]


@pytest.mark.parametrize("block,seed_ids,expected", CASES)
def test_exact_masks_on_small_grids(block, seed_ids, expected):
    geometry = Geometry.of((1, 1, 5, 5), block, False)
    seeds = torch.tensor(seed_ids)
    want = grid(expected)
    assert torch.equal(index_paint(seeds, geometry)[0, 0], want)
    assert torch.equal(dense_mask(seeds, geometry)[0, 0], want)
    seed_grid = torch.zeros(geometry.trials, dtype=torch.bool)
    seed_grid[seeds] = True
    assert torch.equal(paint_seed_grid(seed_grid.view(1, *geometry.valid), geometry.block)[0], want)


def test_seed_ids_address_maps_and_channels():
    geometry = Geometry.of((2, 3, 4, 4), (3, 3), False)  # 4 valid positions per map
    seeds = torch.tensor([4 * 4 + 3])  # map 4 = sample 1, channel 1; corner (1, 1)
    mask = index_paint(seeds, geometry)
    assert mask.sum() == 9
    assert mask[1, 1, 1:4, 1:4].all()


def test_shared_channels_paint_every_channel():
    geometry = Geometry.of((2, 3, 4, 4), (3, 3), True)
    mask = index_paint(torch.tensor([4 + 0]), geometry)  # sample 1, corner (0, 0)
    assert mask[1, :, :3, :3].all() and mask.sum() == 27


@pytest.mark.parametrize("shape,block,shared", [
    ((4, 5, 9), (3,), False), ((2, 3, 6, 7, 5), (2, 3, 2), False), ((6, 4, 9, 8), (3, 2), True),
    ((8, 16, 14, 14), (7, 7), False), ((8, 16, 7, 7), (7, 7), False),
])
@pytest.mark.parametrize("gamma", [0.02, 0.2])
def test_index_and_dense_painting_and_counting_agree(shape, block, shared, gamma):
    geometry = Geometry.of(shape, block, shared)
    seeds = sample_seeds(geometry.trials, gamma, generator=torch.Generator().manual_seed(1))
    dense = dense_mask(seeds, geometry).expand(shape)
    assert torch.equal(index_paint(seeds, geometry), dense)
    assert count_dropped(seeds, geometry) == int(dense.sum())
    # Any memory layout: channels_last target, painted by its own strides.
    if len(shape) == 4:
        target = torch.zeros(shape, dtype=torch.bool).to(memory_format=torch.channels_last)
        assert torch.equal(fill_blocks_(target, seeds, geometry, True), dense)


def test_every_block_is_whole_and_inside_the_map():
    """Each sampled seed alone paints exactly prod(block) units: no block is cut by a border."""
    geometry = Geometry.of((2, 3, 11, 9), (5, 3), False)
    seeds = sample_seeds(geometry.trials, 0.05, generator=torch.Generator().manual_seed(0))
    assert seeds.numel() > 10
    for seed in seeds.tolist():
        assert index_paint(torch.tensor([seed]), geometry).sum() == 15


def test_seeds_sorted_unique_and_in_range():
    gen = torch.Generator().manual_seed(3)
    for trials, gamma in [(1, 0.5), (10, 0.99), (1000, 0.001), (50_000, 0.3)]:
        seeds = sample_seeds(trials, gamma, generator=gen)
        assert (seeds[1:] > seeds[:-1]).all()
        assert seeds.numel() == 0 or (0 <= seeds.min() and seeds.max() < trials)
    assert sample_seeds(5, 1.0).tolist() == [0, 1, 2, 3, 4]
    assert sample_seeds(5, 0.0).numel() == 0


def test_geometric_gaps_have_the_geometric_law():
    """200,000 draws at gamma = 0.05: P(G = 1) = gamma and P(G > k) = (1 - gamma) ** k.

    Tolerance: 4 standard errors of a proportion, sqrt(q (1 - q) / 200,000) <= 0.0012.
    """
    gamma, draws = 0.05, 200_000
    gaps = geometric_gaps(draws, gamma, 10**9, torch.Generator().manual_seed(2), None)
    assert gaps.dtype == torch.int64 and gaps.min() >= 1
    for k in (0, 1, 10, 40):
        want = (1 - gamma) ** k
        assert abs(float((gaps > k).double().mean()) - want) < 4 * math.sqrt(want * (1 - want)
                                                                             / draws) + 1e-9
    assert gaps.double().mean() == pytest.approx(1 / gamma, rel=0.01)  # s.e. 0.22 %


def test_geometric_gaps_are_capped_for_tiny_rates():
    gaps = geometric_gaps(1000, 1e-300, 5000, torch.Generator().manual_seed(0), None)
    assert int(gaps.max()) == 5000  # capped, no int64 overflow


def test_seed_count_is_binomial():
    """Counts over 4,000 draws: mean and variance of Binomial(T, gamma).

    Tolerance: mean within 4 standard errors; variance within 12 % (the sample
    variance of 4,000 draws has a relative s.e. of about sqrt(2/4000) = 2.2 %).
    """
    trials, gamma, draws = 2_000, 0.01, 4_000
    gen = torch.Generator().manual_seed(11)
    counts = torch.tensor([float(sample_seeds(trials, gamma, generator=gen).numel())
                           for _ in range(draws)])
    mean, var = trials * gamma, trials * gamma * (1 - gamma)
    assert abs(counts.mean() - mean) < 4 * math.sqrt(var / draws)
    assert counts.var() == pytest.approx(var, rel=0.12)


def chi_square(counts: torch.Tensor) -> float:
    expected = counts.sum() / counts.numel()
    return float(((counts - expected) ** 2 / expected).sum())


def test_seed_positions_uniform_like_the_reference():
    """Positions pooled over 400 draws of 64 maps with 8x8 valid regions (64 cells).

    Both samplers must pass a chi-square test at the 0.999 quantile of chi2(63) = 103.4.
    """
    geometry = Geometry.of((64, 1, 14, 14), (7, 7), False)
    gamma = 0.05
    gen = torch.Generator().manual_seed(5)
    fast = torch.zeros(geometry.positions)
    ref = torch.zeros(geometry.positions)
    for _ in range(400):
        seeds = sample_seeds(geometry.trials, gamma, generator=gen)
        fast += torch.bincount(seeds % geometry.positions, minlength=geometry.positions)
        draws = torch.rand((geometry.maps, geometry.positions), generator=gen) < gamma
        ref += draws.sum(0)
    assert chi_square(fast) < 103.4
    assert chi_square(ref) < 103.4
    # Same rate: totals agree within 4 standard errors of a Poisson total.
    assert abs(fast.sum() - ref.sum()) < 4 * math.sqrt(2 * ref.sum())


@pytest.mark.parametrize("shape,block,p", [
    ((200, 16, 14, 14), (7, 7), 0.1),
    ((200, 16, 7, 7), (7, 7), 0.1),
    ((100, 8, 16, 16), (4, 2), 0.3),
    ((400, 8, 30), (5,), 0.2),
])
def test_dropped_fraction_matches_the_reference(shape, block, p):
    """Fast and dense masks drop p on average; tolerance 4 s.e. of the per-map mean."""
    from convdrop.ops.functional import block_mask

    gen = torch.Generator().manual_seed(7)
    fast = block_mask(shape, p, block, generator=gen).float().flatten(2).mean(-1)
    ref = reference_block_mask(shape, p, block, generator=gen).float().flatten(2).mean(-1)
    for per_map in (fast, ref):
        se = per_map.std() / math.sqrt(per_map.numel())
        assert abs(per_map.mean() - p) < 4 * se + 1e-3
    gamma = calibrated_gamma(shape[2:], block, p)
    assert 0 < gamma < 1
