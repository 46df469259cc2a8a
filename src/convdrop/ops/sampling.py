"""Fast DropBlock: O(seeds) randomness, blocks painted by index, seeds saved for backward.

The seeds of all maps form one Bernoulli(gamma) process over ``trials = maps *
positions`` slots (``positions`` = size of the valid region). The gaps between
successes of such a process are Geometric(gamma), so drawing about
``gamma * trials`` geometric gaps and taking their cumulative sum yields exactly
the seed set, with random numbers proportional to the number of seeds rather
than to the number of units.

A seed id ``s`` names map ``s // positions`` and, inside the valid region, the
block's first corner ``s % positions`` (row-major). For odd block sides the block
is centred on its seed; for even sides the extra row/column lies after the
centre, i.e. the block spans ``[c - (k - 1) // 2, c + k // 2]`` around centre ``c``.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from convdrop.ops.gamma import clip_block


@dataclass(frozen=True)
class Geometry:
    """Where seeds can fall for a tensor of ``shape`` (N, C, *spatial)."""

    shape: tuple[int, ...]
    block: tuple[int, ...]  # clipped to the map
    shared_channels: bool

    @staticmethod
    def of(shape: tuple[int, ...], block: tuple[int, ...], shared_channels: bool) -> Geometry:
        return Geometry(tuple(shape), clip_block(tuple(shape[2:]), block), shared_channels)

    @property
    def spatial(self) -> tuple[int, ...]:
        return self.shape[2:]

    @property
    def valid(self) -> tuple[int, ...]:
        return tuple(s - k + 1 for s, k in zip(self.spatial, self.block))

    @property
    def positions(self) -> int:
        return math.prod(self.valid)

    @property
    def maps(self) -> int:
        n, c = self.shape[:2]
        return n if self.shared_channels else n * c

    @property
    def trials(self) -> int:
        return self.maps * self.positions

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


def geometric_gaps(
    size: int, gamma: float, cap: int,
    generator: torch.Generator | None, device: torch.device | str | None,
) -> torch.Tensor:
    """``size`` draws of Geometric(``gamma``) on {1, 2, ...}, capped at ``cap``: int64 (size,).

    By inversion, ``floor(log(1 - U) / log(1 - gamma)) + 1`` with U uniform in [0, 1)
    drawn in float64 (53 random bits, so the tail is exact to ~1e-16). Four vectorized
    passes cost about half of ``Tensor.geometric_``, which takes a scalar log per draw.
    The cap keeps tiny rates from overflowing int64. A caller must pass a cap that
    still lands *past* the last slot: a capped gap is then exactly as good as the
    true one (both end the seed set), and the law of every drawn seed is unchanged.
    """
    u = torch.rand(size, dtype=torch.float64, generator=generator, device=device)
    gaps = u.neg_().log1p_().div_(math.log1p(-gamma)).floor_().add_(1.0).clamp_(max=cap)
    return gaps.to(torch.int64)


def sample_seeds(
    trials: int,
    gamma: float,
    *,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Sorted ids of the successes of ``trials`` Bernoulli(``gamma``) draws.

    Exactly that law: every slot, the first and the last included, is a success with
    probability ``gamma`` independently of the others, so the set is empty with
    probability ``(1 - gamma) ** trials``.

    Returns an int64 tensor (num_seeds,) on ``device``; int32 would halve the
    saved bytes but ``index_fill_`` needs int64 anyway.
    """
    if gamma <= 0.0 or trials == 0:
        return torch.empty(0, dtype=torch.int64, device=device)
    if gamma >= 1.0:
        return torch.arange(trials, dtype=torch.int64, device=device)
    chunks = []
    start = -1  # position of the last success drawn so far
    while start < trials - 1:
        remaining = trials - 1 - start  # slots after ``start``: start + 1 .. trials - 1
        mean = remaining * gamma
        size = min(remaining, int(mean + 6.0 * math.sqrt(mean) + 16))
        # A gap of remaining + 1 lands on slot ``trials``, one past the end: capping any
        # lower would turn "no further success" into a success on the last slot.
        gaps = geometric_gaps(size, gamma, remaining + 1, generator, device)
        positions = gaps.cumsum_(0).add_(start)
        chunks.append(positions)
        start = int(positions[-1])
    seeds = torch.cat(chunks) if len(chunks) > 1 else chunks[0]
    end = int(torch.searchsorted(seeds, trials))
    return seeds[:end]


@functools.lru_cache(maxsize=256)
def _offsets(
    sizes: tuple[int, ...], strides: tuple[int, ...], device: torch.device
) -> torch.Tensor:
    """Offsets of every point of a row-major grid of ``sizes``: int64 (prod(sizes),).

    Cached: the same few tables serve every call of a training run. Read-only.
    """
    offsets = torch.zeros(1, dtype=torch.int64, device=device)
    for size, stride in zip(sizes, strides):
        steps = torch.arange(size, dtype=torch.int64, device=device) * stride
        offsets = (offsets[:, None] + steps[None, :]).reshape(-1)
    return offsets


def block_starts(
    seeds: torch.Tensor, geometry: Geometry, strides: tuple[int, ...]
) -> torch.Tensor:
    """Element offsets (in units of ``strides``) of each dropped block's first corner.

    A cached table of corner offsets keeps the per-seed work to a division and a
    gather. Works for any layout (channels_last, slices). Returns int64 (S * C_shared,):
    with ``shared_channels`` a seed has one block per channel.
    """
    n, c = geometry.shape[:2]
    device = seeds.device
    maps = torch.div(seeds, geometry.positions, rounding_mode="floor")
    corner = seeds - maps * geometry.positions
    corner_table = _offsets(geometry.valid, strides[2:], device)  # (positions,)
    if geometry.shared_channels:
        base = (maps * strides[0] + corner_table[corner])[:, None]
        return (base + _offsets((c,), strides[1:2], device)[None, :]).reshape(-1)
    if strides[0] == c * strides[1]:  # contiguous-like: map m starts at m * stride_C
        return maps * strides[1] + corner_table[corner]
    sample = torch.div(maps, c, rounding_mode="floor")
    return sample * strides[0] + (maps - sample * c) * strides[1] + corner_table[corner]


def storage_span(t: torch.Tensor) -> int:
    """Number of storage elements from ``t``'s first element to its last."""
    if t.numel() == 0:
        return 0
    return 1 + sum((size - 1) * stride for size, stride in zip(t.shape, t.stride()))


def fill_rows_(
    target: torch.Tensor, starts: torch.Tensor, geometry: Geometry, value: float | bool
) -> torch.Tensor:
    """Set the blocks whose corners are at ``starts`` (from :func:`block_starts` for
    ``target``'s strides) to ``value``, in place.

    ``target`` is seen as overlapping rows of ``block[-1]`` units (an ``as_strided``
    view over its storage), and whole rows are filled by index: ``prod(block[:-1])``
    indices per block instead of ``prod(block)``.
    """
    if starts.numel() == 0 or target.numel() == 0:
        return target
    strides = tuple(target.stride())
    width, step = geometry.block[-1], strides[-1]
    rows = target.as_strided((storage_span(target) - (width - 1) * step, width), (1, step))
    in_block = _offsets(geometry.block[:-1], strides[2:-1], starts.device)
    rows.index_fill_(0, (starts[:, None] + in_block[None, :]).reshape(-1), value)
    return target


def fill_blocks_(
    target: torch.Tensor, seeds: torch.Tensor, geometry: Geometry, value: float | bool
) -> torch.Tensor:
    """Set every unit of the seeds' blocks in ``target`` (N, C, *spatial) to ``value``."""
    starts = block_starts(seeds, geometry, tuple(target.stride()))
    return fill_rows_(target, starts, geometry, value)


def _corner_coords(corner: torch.Tensor, valid: tuple[int, ...]) -> torch.Tensor:
    """Row-major corner index -> per-dim coordinates: int64 (S, ndim)."""
    coords = []
    for size in reversed(valid):
        coords.append(corner % size)
        corner = torch.div(corner, size, rounding_mode="floor")
    return torch.stack(coords[::-1], dim=1)


def count_dropped(seeds: torch.Tensor, geometry: Geometry) -> int:
    """Distinct dropped units in the whole tensor, overlaps counted once.

    Seeds are sorted, so a map's seeds are neighbours. A map with one seed drops one
    block; with two, two blocks less their box overlap; only maps with three or
    more seeds (rare at useful rates) are painted into a small buffer and counted.
    """
    if seeds.numel() == 0:
        return 0
    area = math.prod(geometry.block)
    maps = torch.div(seeds, geometry.positions, rounding_mode="floor")
    same = maps[1:] == maps[:-1]  # seed i + 1 shares seed i's map
    shared = geometry.shape[1] if geometry.shared_channels else 1
    if not bool(same.any()):  # one seed per map at most (always so when the block fills it)
        return seeds.numel() * area * shared
    no = torch.zeros(1, dtype=torch.bool, device=seeds.device)
    after, before = torch.cat([no, same]), torch.cat([same, no])
    crowded = after | before
    total = int((~crowded).sum()) * area
    if bool(crowded.any()):
        corner = (seeds - maps * geometry.positions)[crowded]
        group = torch.cumsum(~after[crowded], 0) - 1  # crowded map of each crowded seed
        sizes = torch.bincount(group)
        first = torch.cumsum(sizes, 0) - sizes
        pairs = first[sizes == 2]
        coords = _corner_coords(corner, geometry.valid)
        gap = (coords[pairs] - coords[pairs + 1]).abs()
        block = torch.tensor(geometry.block, device=seeds.device)
        overlap = (block - gap).clamp_(min=0).prod(dim=1)
        total += int(pairs.numel()) * 2 * area - int(overlap.sum())
        many = (sizes >= 3)[group]
        if bool(many.any()):
            local_map = torch.cumsum(many & ~after[crowded], 0)[many] - 1
            local = Geometry((int(local_map[-1]) + 1, 1, *geometry.spatial), geometry.block,
                             False)
            buffer = torch.zeros(local.shape, dtype=torch.bool, device=seeds.device)
            local_seeds = local_map * geometry.positions + corner[many]
            total += int(fill_blocks_(buffer, local_seeds, local, True).count_nonzero())
    return total * shared


def dense_mask(seeds: torch.Tensor, geometry: Geometry) -> torch.Tensor:
    """Paint blocks with a max-pool over the seed grid: bool (N, C or 1, *spatial).

    Cheaper than index painting once blocks cover more units than the tensor has.
    """
    n, c = geometry.shape[:2]
    channels = 1 if geometry.shared_channels else c
    grid = torch.zeros(geometry.trials, dtype=torch.float32, device=seeds.device)
    grid[seeds] = 1.0
    grid = grid.view(geometry.maps, 1, *geometry.valid)
    pad: list[int] = []
    for size, k in zip(reversed(geometry.spatial), reversed(geometry.block)):
        valid = size - k + 1
        pad += [k - 1, size - valid]  # blocks reach k - 1 units past their corner
    grid = F.pad(grid, pad)
    pool = (F.max_pool1d, F.max_pool2d, F.max_pool3d)[len(geometry.block) - 1]
    painted = pool(grid, kernel_size=geometry.block, stride=1)
    return painted.view(n, channels, *geometry.spatial) > 0


def use_dense(seeds: torch.Tensor, geometry: Geometry) -> bool:
    """Index painting writes seeds x blocks offsets; past the tensor's size, pool instead."""
    per_seed = math.prod(geometry.block) * (geometry.shape[1] if geometry.shared_channels else 1)
    return seeds.numel() * per_seed > geometry.numel
