"""Exactness on small geometries, for every path that makes DropBlock or Cutout masks.

Large-tensor averages hide off-by-one errors: one forced seed per call is 0.1 % of
a 32x64x14x14 tensor but the whole map of a 1x1x7x7 one. So every check here runs
many seeded calls on tiny tensors (sides 1 to 6, blocks up to the map and beyond,
p from 1e-6 to 0.999) and compares them with the exact law:

- a valid slot is a seed with probability ``gamma`` (from ``_gamma``), independently;
- unit ``u`` is dropped with probability ``q(u) = 1 - (1 - gamma) ** m(u)``, ``m(u)``
  the number of valid corners whose block covers ``u`` (counted here by brute force);
- the mask is empty with probability ``(1 - gamma) ** trials``.

Calls and maps are independent, so each unit's drop count over ``R`` calls of ``M``
maps is exactly Binomial(R * M, q(u)), and the number of empty calls is exactly
Binomial(R, (1 - gamma) ** trials). Tolerances are written at each check.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from convdrop import block_mask, cutout_mask, drop_block
from convdrop.ops import native as _native
from convdrop.ops.gamma import clip_block, seed_rate
from convdrop.ops.sampling import sample_seeds

from conftest import gen

MaskFn = Callable[[tuple[int, ...], float, tuple[int, ...], bool, torch.Generator], torch.Tensor]

# A per-unit (or per-count) two-sided p-value below this fails a check. The tests are
# seeded, so they are deterministic; the level only says how surprising a failure is.
# With about 20,000 unit checks in the suite, a correct sampler would fail one of them
# by chance with probability about 2e-3 before seeding.
LEVEL = 1e-7



def coverage(spatial: tuple[int, ...], block: tuple[int, ...]) -> np.ndarray:
    """m(u): how many valid corners' blocks cover each unit, by brute force."""
    m = np.zeros(spatial, dtype=np.int64)
    valid = [s - k + 1 for s, k in zip(spatial, block)]
    for corner in itertools.product(*(range(v) for v in valid)):
        m[tuple(slice(c, c + k) for c, k in zip(corner, block))] += 1
    return m


def binomial_pvalues(count: np.ndarray, n: int, q: np.ndarray) -> np.ndarray:
    """Two-sided p-values of counts under Binomial(n, q), element-wise (exact tails)."""
    low = stats.binom.cdf(count, n, q)
    high = stats.binom.sf(count - 1, n, q)
    return np.minimum(1.0, 2.0 * np.minimum(low, high))


def check_masks(make: MaskFn, spatial: tuple[int, ...], block: tuple[int, ...], p: float,
                calibrated: bool, calls: int, seed: int, maps: int = 2) -> None:
    """Draw ``calls`` masks of shape (1, maps, *spatial) and test them against the exact law."""
    clipped = clip_block(spatial, block)
    gamma = seed_rate(spatial, clipped, p, calibrated)
    q = 1.0 - (1.0 - gamma) ** coverage(spatial, clipped)  # (*spatial,)
    expected = float(q.mean())
    if calibrated:
        assert expected == pytest.approx(p, abs=1e-9)  # the calibration is exact
    generator = gen(seed)
    shape = (1, maps, *spatial)
    dropped = np.zeros(spatial, dtype=np.int64)
    fractions, empty = [], 0
    for _ in range(calls):
        mask = make(shape, p, block, calibrated, generator)
        assert mask.shape == shape and mask.dtype == torch.bool
        dropped += mask.sum(dim=(0, 1)).numpy()
        fractions.append(float(mask.float().mean()))
        empty += int(not bool(mask.any()))
    where = f"{spatial} block {block} p={p} calibrated={calibrated}"
    # 1. Mean dropped fraction. Tolerance: 5 standard errors of the mean over calls,
    #    the sample SE floored at the Binomial SE of independent units, sqrt(q(1-q)/n).
    n_units = maps * math.prod(spatial)
    spread = max(float(np.std(fractions)), math.sqrt(expected * (1 - expected) / n_units))
    tolerance = 5.0 * spread / math.sqrt(calls) + 1e-12
    assert abs(float(np.mean(fractions)) - expected) <= tolerance, where
    # 2. Every unit: its count is exactly Binomial(calls * maps, q(u)).
    worst = binomial_pvalues(dropped, calls * maps, q).min()
    assert worst > LEVEL, f"{where}: a unit's drop count is off (p-value {worst:.2g})"
    # 3. Empty masks: exactly Binomial(calls, (1 - gamma) ** trials).
    trials = maps * math.prod(s - k + 1 for s, k in zip(spatial, clipped))
    p_empty = (1.0 - gamma) ** trials
    pvalue = binomial_pvalues(np.array(empty), calls, np.array(p_empty))
    assert pvalue > LEVEL, f"{where}: {empty}/{calls} empty, expected {p_empty:.4g}"


def _via_block_mask(shape, p, block, calibrated, generator):
    return block_mask(shape, p, block, calibrated=calibrated, generator=generator)


def _zeros_of(dtype: torch.dtype) -> MaskFn:
    def make(shape, p, block, calibrated, generator):
        y = drop_block(torch.ones(shape, dtype=dtype), p, block, calibrated=calibrated,
                       generator=generator)
        return y == 0  # kept units are scaled by count / kept > 0
    return make


def _via_pytorch_path(shape, p, block, calibrated, generator):
    with _native.disabled():
        return _zeros_of(torch.float32)(shape, p, block, calibrated, generator)


def _via_fused_kernel(shape, p, block, calibrated, generator):
    if not _native.active():
        pytest.skip("the fused CPU kernel is not built")
    return _zeros_of(torch.float32)(shape, p, block, calibrated, generator)


def _via_generic_path(shape, p, block, calibrated, generator):
    """The sync-free device path, forced onto CPU tensors."""
    with _native.forced("torch-generic"):
        return _zeros_of(torch.float32)(shape, p, block, calibrated, generator)


def _via_generic_block_mask(shape, p, block, calibrated, generator):
    with _native.forced("torch-generic"):
        return _via_block_mask(shape, p, block, calibrated, generator)


PATHS = {
    "block_mask": _via_block_mask,
    "fused_kernel": _via_fused_kernel,
    "pytorch_path": _via_pytorch_path,
    "pytorch_path_float16": _zeros_of(torch.float16),
    "generic_path": _via_generic_path,
    "generic_block_mask": _via_generic_block_mask,
}


def _small_geometries() -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    """Maps of side 1 to 6 with every block up to the map and one past it."""
    cases = []
    for side in range(1, 7):
        for k in range(1, side + 2):
            cases.append(((side,), (k,)))
            cases.append(((side, side), (k, k)))
    cases += [(((2, 5)), (1, 3)), ((5, 2), (2, 2)), ((3, 6), (3, 7)), ((6, 4), (2, 5)),
              ((2, 2, 2), (1, 1, 1)), ((2, 2, 2), (2, 2, 2)), ((3, 2, 4), (2, 2, 2)),
              ((3, 2, 4), (1, 3, 2)), ((2, 3, 3), (4, 4, 4))]
    return cases


SMALL = _small_geometries()
RATES = [1e-6, 0.1, 0.5, 0.999]


@pytest.mark.parametrize("spatial,block", SMALL, ids=str)
@pytest.mark.parametrize("p", RATES)
def test_block_mask_is_exact_on_every_small_geometry(spatial, block, p):
    check_masks(_via_block_mask, spatial, block, p, True, calls=300, seed=1)


@pytest.mark.parametrize("spatial,block", [((1,), (1,)), ((6,), (2,)), ((5, 5), (3, 3)),
                                           ((6, 6), (7, 7)), ((3, 2, 4), (2, 2, 2))], ids=str)
@pytest.mark.parametrize("p", [0.1, 0.5])
def test_paper_gamma_is_sampled_exactly(spatial, block, p):
    check_masks(_via_block_mask, spatial, block, p, False, calls=300, seed=2)


OP_GEOMETRIES = [case for case in SMALL if len(case[0]) == 2] + [
    ((1,), (1,)), ((6,), (3,)), ((2, 2, 2), (2, 2, 2)), ((3, 2, 4), (1, 3, 2))]


@pytest.mark.parametrize("path", ["fused_kernel", "pytorch_path", "pytorch_path_float16",
                                  "generic_path"])
@pytest.mark.parametrize("spatial,block", OP_GEOMETRIES, ids=str)
@pytest.mark.parametrize("p", [1e-6, 0.1, 0.999])
def test_drop_block_paths_are_exact_on_small_geometries(path, spatial, block, p):
    check_masks(PATHS[path], spatial, block, p, True, calls=200, seed=3)


@pytest.mark.parametrize("spatial,block", SMALL, ids=str)
@pytest.mark.parametrize("p", RATES)
def test_generic_block_mask_is_exact_on_every_small_geometry(spatial, block, p):
    """The sync-free path draws one 31-bit integer per valid position, so its rate is
    gamma rounded to 2**-31: exact at these tolerances."""
    check_masks(PATHS["generic_block_mask"], spatial, block, p, True, calls=300, seed=9)


@pytest.mark.parametrize("spatial,block", [((6,), (2,)), ((5, 5), (3, 3)), ((6, 6), (7, 7)),
                                           ((3, 2, 4), (2, 2, 2))], ids=str)
def test_generic_path_samples_the_paper_gamma_exactly(spatial, block):
    check_masks(PATHS["generic_path"], spatial, block, 0.3, False, calls=300, seed=10)


def test_one_map_of_one_block_is_dropped_at_rate_p():
    """The defect this file was written for: a 7x7 map with block 7 has one valid slot,
    so the whole map drops with probability p, not on every call."""
    generator = gen(4)
    whole = sum(bool(block_mask((1, 1, 7, 7), 0.1, 7, generator=generator).all())
                for _ in range(2000))
    assert stats.binomtest(whole, 2000, 0.1).pvalue > LEVEL
    x = torch.ones(32, 64, 7, 7)
    hits = sum(bool((drop_block(x, 1e-6, 3, generator=generator) == 0).any())
               for _ in range(50))
    assert hits <= 3  # P(any seed) = 1 - (1 - gamma) ** 51200 ≈ 0.006 per call


# --- the sampler itself -----------------------------------------------------------

@pytest.mark.parametrize("trials", [1, 2, 5, 36, 200])
@pytest.mark.parametrize("gamma", [1e-3, 0.1, 0.5, 0.99])
def test_every_slot_is_a_seed_with_probability_gamma(trials, gamma):
    """Chi-square over the slots (the first and the last included) of their seed counts,
    each Binomial(R, gamma); R is chosen so every slot expects at least 20 seeds."""
    calls = max(400, math.ceil(20 / min(gamma, 1 - gamma)))
    generator = gen(5)
    counts = np.zeros(trials, dtype=np.int64)
    empty = 0
    for _ in range(calls):
        seeds = sample_seeds(trials, gamma, generator=generator)
        counts[seeds.numpy()] += 1
        empty += int(seeds.numel() == 0)
    statistic = float(((counts - calls * gamma) ** 2).sum() / (calls * gamma * (1 - gamma)))
    assert stats.chi2.sf(statistic, df=trials) > LEVEL
    assert binomial_pvalues(counts[[0, -1]], calls, np.array(gamma)).min() > LEVEL
    p_empty = (1 - gamma) ** trials
    assert binomial_pvalues(np.array(empty), calls, np.array(p_empty)) > LEVEL


def test_seed_sets_are_empty_as_often_as_bernoulli_says():
    """At gamma = 1e-6 over 1,000 slots, 99.9 % of sets are empty; the old sampler's
    forced seed made every set non-empty."""
    generator = gen(6)
    sizes = [sample_seeds(1000, 1e-6, generator=generator).numel() for _ in range(3000)]
    empty = sum(size == 0 for size in sizes)
    assert stats.binomtest(empty, 3000, (1 - 1e-6) ** 1000).pvalue > LEVEL


@settings(derandomize=True, max_examples=40, deadline=None)
@given(trials=st.integers(1, 300), gamma=st.floats(1e-4, 0.999))
def test_sampler_matches_a_dense_bernoulli_reference(trials, gamma):
    """Against ``rand(trials) < gamma``: both give sorted, unique, in-range ids; the
    seed totals and every slot's count agree (two-proportion z-tests, |z| < 5.5)."""
    calls = 200
    generator = gen(7)
    fast = np.zeros(trials, dtype=np.int64)
    dense = np.zeros(trials, dtype=np.int64)
    for _ in range(calls):
        seeds = sample_seeds(trials, gamma, generator=generator)
        assert seeds.dtype == torch.int64
        assert bool((seeds[1:] > seeds[:-1]).all())
        assert seeds.numel() == 0 or (0 <= int(seeds[0]) and int(seeds[-1]) < trials)
        fast[seeds.numpy()] += 1
        dense += (torch.rand(trials, generator=generator) < gamma).numpy()

    def z(a: np.ndarray, b: np.ndarray, n: int) -> np.ndarray:
        pooled = (a + b) / (2 * n)
        se = np.sqrt(np.maximum(2 * pooled * (1 - pooled) / n, 1e-300))
        return np.abs(a - b) / n / se

    assert z(fast.sum(), dense.sum(), calls * trials) < 5.5
    assert z(fast, dense, calls).max() < 5.5


# --- Cutout -----------------------------------------------------------------------

def _cutout_probability(extent: int, side: int) -> np.ndarray:
    """P(a pixel row is inside the patch) per row: centres uniform over [0, extent)."""
    hits = np.zeros(extent)
    for centre in range(extent):
        start = centre - (side - 1) // 2
        hits[max(start, 0):max(min(start + side, extent), 0)] += 1
    return hits / extent


@pytest.mark.parametrize("image,size,count", [
    ((1, 1), (1, 1), 1), ((3, 5), (2, 2), 1), ((6, 6), (3, 3), 2), ((4, 4), (9, 9), 1),
    ((5, 2), (2, 4), 3),
])
def test_cutout_mask_is_exact_on_small_images(image, size, count):
    """Each pixel is cut with probability 1 - (1 - P(row) P(col)) ** count; the count of
    cut draws per pixel is Binomial(calls * N, that)."""
    calls, n = 300, 4
    generator = gen(8)
    cut = np.zeros(image, dtype=np.int64)
    for _ in range(calls):
        mask = cutout_mask((n, 3, *image), size, count=count, generator=generator)
        assert mask.shape == (n, 1, *image)
        cut += mask.sum(dim=(0, 1)).numpy()
    one = np.outer(_cutout_probability(image[0], size[0]), _cutout_probability(image[1], size[1]))
    q = 1.0 - (1.0 - one) ** count
    assert binomial_pvalues(cut, calls * n, q).min() > LEVEL
