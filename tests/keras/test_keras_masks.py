"""Exactness of the Keras DropBlock on small geometries, as tests/ops/test_exactness.py
checks the PyTorch paths.

Every check draws one seeded mask of ``samples`` x ``maps`` tiny maps (sides 1 to 6,
blocks up to the map and one past it, rates from 1e-6 to 0.999) and compares it with the
exact law: a valid slot is a seed with probability gamma (convdrop's calibration), unit
``u`` drops with probability ``q(u) = 1 - (1 - gamma) ** m(u)`` (``m(u)`` counted here by
brute force), so each unit's drop count is Binomial(samples * maps, q(u)), and a sample
has no seed at all with probability ``(1 - gamma) ** (maps * valid slots)``. Samples
and maps are independent, so one call of ``samples`` samples stands for that many calls.
Runs under whichever Keras backend the test run chose (torch in ``make test``).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import keras
import numpy as np
import pytest
from keras import ops
from scipy import stats

from convdrop.keras import DropBlock1D, DropBlock2D, DropBlock3D, block_mask
from convdrop.keras import masks as M
from convdrop.ops.gamma import clip_block, seed_rate

# A per-unit (or per-count) two-sided p-value below this fails a check (as in
# tests/ops/test_exactness.py). Seeded, so deterministic; the level says how surprising.
LEVEL = 1e-7
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")
LAYERS = {1: DropBlock1D, 2: DropBlock2D, 3: DropBlock3D}
Make = Callable[[tuple[int, ...], float, tuple[int, ...], bool, int], np.ndarray]


def coverage(spatial: tuple[int, ...], block: tuple[int, ...]) -> np.ndarray:
    """m(u): how many valid corners' blocks cover each unit, by brute force."""
    m = np.zeros(spatial, dtype=np.int64)
    for corner in itertools.product(*(range(s - k + 1) for s, k in zip(spatial, block))):
        m[tuple(slice(c, c + k) for c, k in zip(corner, block))] += 1
    return m


def fraction_sd(spatial: tuple[int, ...], block: tuple[int, ...], gamma: float) -> float:
    """The exact standard deviation of one map's dropped fraction: units u and v are both
    kept with probability (1 - gamma) ** |C(u) | C(v)|, C(u) the valid corners covering u."""
    units = list(itertools.product(*(range(s) for s in spatial)))
    corners = list(itertools.product(*(range(s - k + 1) for s, k in zip(spatial, block))))
    covers = np.array([[all(c <= u < c + k for u, c, k in zip(unit, corner, block))
                        for corner in corners] for unit in units], dtype=np.int64)
    size = covers.sum(axis=1)
    union = size[:, None] + size[None, :] - covers @ covers.T
    log_keep = math.log1p(-gamma) if gamma < 1 else -math.inf
    kept = np.exp(size * log_keep)
    variance = (np.exp(union * log_keep).sum() - kept.sum() ** 2) / len(units) ** 2
    return math.sqrt(max(variance, 0.0))


def pvalues(count: np.ndarray, n: int, q: np.ndarray) -> np.ndarray:
    """Two-sided p-values of counts under Binomial(n, q), element-wise (exact tails)."""
    return np.minimum(1.0, 2.0 * np.minimum(stats.binom.cdf(count, n, q),
                                            stats.binom.sf(count - 1, n, q)))


def check_law(make: Make, spatial: tuple[int, ...], block: tuple[int, ...], rate: float,
              calibrated: bool = True, samples: int = 400, maps: int = 2, seed: int = 0) -> None:
    """``make`` returns a bool (samples, maps, *spatial) mask, True where dropped."""
    clipped = clip_block(spatial, block)
    gamma = seed_rate(spatial, clipped, rate, calibrated)
    q = 1.0 - (1.0 - gamma) ** coverage(spatial, clipped)  # (*spatial,)
    expected = float(q.mean())
    mask = make((samples, maps, *spatial), rate, block, calibrated, seed)
    assert mask.shape == (samples, maps, *spatial) and mask.dtype == bool
    where = f"{spatial} block {block} rate={rate} calibrated={calibrated}"
    # 1. Mean dropped fraction within 5 standard errors over samples, the SE exact (from
    #    the pairwise law of the units, not the sample's spread: when a block is the map,
    #    400 samples at rate 0.999 are all dropped about half the time).
    fractions = mask.reshape(samples, -1).mean(axis=1)
    spread = fraction_sd(spatial, clipped, gamma) / math.sqrt(maps)
    assert abs(fractions.mean() - expected) <= 5.0 * spread / math.sqrt(samples) + 1e-12, where
    # 2. Every unit's drop count is Binomial(samples * maps, q(u)).
    worst = pvalues(mask.sum(axis=(0, 1)), samples * maps, q).min()
    assert worst > LEVEL, f"{where}: a unit's drop count is off (p-value {worst:.2g})"
    # 3. Samples without a seed: Binomial(samples, (1 - gamma) ** slots).
    empty = int((~mask.reshape(samples, -1).any(axis=1)).sum())
    slots = maps * math.prod(s - k + 1 for s, k in zip(spatial, clipped))
    p_empty = (1.0 - gamma) ** slots
    assert pvalues(np.array(empty), samples, np.array(p_empty)) > LEVEL, \
        f"{where}: {empty}/{samples} empty, expected {p_empty:.4g}"


def _first(mask: np.ndarray, data_format: str) -> np.ndarray:
    """(N, *spatial, C) -> (N, C, *spatial); channels_first comes as it is."""
    return np.moveaxis(mask, -1, 1) if data_format == "channels_last" else mask


def via_block_mask(data_format: str = "channels_last") -> Make:
    def make(shape, rate, block, calibrated, seed):
        if data_format == "channels_last":
            shape = (shape[0], *shape[2:], shape[1])
        mask = block_mask(shape, rate, block, data_format=data_format, calibrated=calibrated,
                          seed=keras.random.SeedGenerator(seed))
        return _first(ops.convert_to_numpy(mask), data_format)
    return make


def via_layer(dtype: str, data_format: str) -> Make:
    """The layer's zeros on a tensor of ones (kept units are scaled by a factor > 0)."""
    def make(shape, rate, block, calibrated, seed):
        if data_format == "channels_last":
            shape = (shape[0], *shape[2:], shape[1])
        layer = LAYERS[len(shape) - 2](rate, block, data_format=data_format, seed=seed,
                                       calibrated=calibrated, dtype=dtype)
        y = ops.convert_to_numpy(layer(np.ones(shape, dtype=dtype), training=True))
        return _first(y == 0, data_format)
    return make


def _small_geometries() -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    """Maps of side 1 to 6 with every block up to the map and one past it, and a few more."""
    cases = []
    for side in range(1, 7):
        for k in range(1, side + 2):
            cases += [((side,), (k,)), ((side, side), (k, k))]
    return cases + [((2, 5), (1, 3)), ((5, 2), (2, 2)), ((3, 6), (3, 7)), ((6, 4), (2, 5)),
                    ((2, 2, 2), (1, 1, 1)), ((2, 2, 2), (2, 2, 2)), ((3, 2, 4), (2, 2, 2)),
                    ((3, 2, 4), (1, 3, 2)), ((2, 3, 3), (4, 4, 4))]


SMALL = _small_geometries()
RATES = [1e-6, 0.1, 0.5, 0.999]
LAYER_GEOMETRIES = [((1, 1), (1, 1)), ((5, 5), (3, 3)), ((6, 6), (2, 2)), ((4, 4), (5, 5)),
                    ((6,), (3,)), ((3, 2, 4), (1, 3, 2))]


@pytest.mark.parametrize("spatial,block", SMALL, ids=str)
@pytest.mark.parametrize("rate", RATES)
def test_block_mask_is_exact_on_every_small_geometry(spatial, block, rate):
    check_law(via_block_mask(), spatial, block, rate, seed=1)


@pytest.mark.parametrize("spatial,block", [((1,), (1,)), ((6,), (2,)), ((5, 5), (3, 3)),
                                           ((6, 6), (7, 7)), ((3, 2, 4), (2, 2, 2))], ids=str)
@pytest.mark.parametrize("rate", [0.1, 0.5])
def test_the_paper_gamma_is_sampled_exactly(spatial, block, rate):
    check_law(via_block_mask(), spatial, block, rate, calibrated=False, seed=2)


@pytest.mark.parametrize("spatial,block", LAYER_GEOMETRIES, ids=str)
@pytest.mark.parametrize("rate", [1e-6, 0.1, 0.999])
@pytest.mark.parametrize("dtype,data_format", [("float32", "channels_last"),
                                               ("float16", "channels_last"),
                                               ("float32", "channels_first")])
def test_the_layers_are_exact(spatial, block, rate, dtype, data_format):
    check_law(via_layer(dtype, data_format), spatial, block, rate, seed=3)


def test_one_map_of_one_block_drops_whole_at_rate_p():
    """7x7 with block 7 has one valid slot: the whole map drops with probability p."""
    mask = ops.convert_to_numpy(block_mask((4000, 7, 7, 1), 0.1, 7, seed=4))
    whole = int(mask.reshape(4000, -1).all(axis=1).sum())
    assert mask.reshape(4000, -1).all(axis=1).sum() == mask.reshape(4000, -1).any(axis=1).sum()
    assert stats.binomtest(whole, 4000, 0.1).pvalue > LEVEL


def test_shared_channels_give_one_exact_mask_per_sample():
    mask = ops.convert_to_numpy(block_mask((500, 5, 5, 3), 0.2, 3, shared_channels=True, seed=5))
    assert (mask == mask[..., :1]).all()
    check_law(lambda shape, *_: np.moveaxis(mask[..., :1], -1, 1), (5, 5), (3, 3), 0.2,
              samples=500, maps=1)


def test_blocks_start_at_their_seed_and_are_clipped_to_the_map():
    """Exact painting on a hand-built grid: a seed at valid slot (1, 2) of a 5x4 map with
    block (3, 2) drops rows 1-3 and columns 2-3; a seed at slot (0, 0) rows 0-2, cols 0-1."""
    seeds = np.zeros((1, 3, 3, 1), dtype=bool)  # valid = (5 - 3 + 1, 4 - 2 + 1)
    seeds[0, 1, 2, 0] = True
    painted = ops.convert_to_numpy(M._grow(ops.convert_to_tensor(seeds), (3, 2)))[0, ..., 0]
    expected = np.zeros((5, 4))
    expected[1:4, 2:4] = 1
    np.testing.assert_array_equal(painted, expected)
    seeds[...] = False
    seeds[0, 0, 0, 0] = True
    painted = ops.convert_to_numpy(M._grow(ops.convert_to_tensor(seeds), (3, 2)))[0, ..., 0]
    expected[...] = 0
    expected[0:3, 0:2] = 1
    np.testing.assert_array_equal(painted, expected)


def test_the_threshold_is_convdrops_seed_rate_to_2_to_the_minus_31():
    spatial, block = (14, 14), (7, 7)
    for calibrated in (True, False):
        gamma = seed_rate(spatial, block, 0.1, calibrated)
        assert M.seed_threshold(spatial, block, 0.1, calibrated) == round(gamma * M.DRAWS)
    assert M.seed_threshold(spatial, (20, 20), 0.3, True) == round(
        seed_rate(spatial, spatial, 0.3, True) * M.DRAWS)  # the block is clipped
    assert M.seed_threshold(spatial, block, 0.0, True) == 0
    assert M.seed_threshold(spatial, block, 1.0, True) == M.DRAWS


@pytest.mark.parametrize("block", [(1, 2), (3, 4), (5, 6), (7, 8), (9, 1), (16, 3)], ids=str)
def test_growing_matches_painting_each_seed_by_hand(block):
    """Random seed grids against a brute-force painter, for blocks whose sides need every
    branch of the doubling (powers of two, one more, one less)."""
    rng = np.random.default_rng(sum(block))
    valid = (5, 4)
    seeds = rng.random((3, *valid, 2)) < 0.15
    expected = np.zeros((3, valid[0] + block[0] - 1, valid[1] + block[1] - 1, 2), dtype=bool)
    for n, i, j, c in zip(*np.nonzero(seeds)):
        expected[n, i:i + block[0], j:j + block[1], c] = True
    painted = ops.convert_to_numpy(M._grow(ops.convert_to_tensor(seeds), block))
    np.testing.assert_array_equal(painted, expected)
