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

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from convdrop._gamma import clip_block


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


def sample_seeds(
    trials: int,
    gamma: float,
    *,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Sorted ids of the successes of ``trials`` Bernoulli(``gamma``) draws.

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
        remaining = trials - 1 - start
        mean = remaining * gamma
        size = min(remaining, int(mean + 6.0 * math.sqrt(mean) + 16))
        gaps = torch.empty(size, dtype=torch.int64, device=device)
        gaps.geometric_(gamma, generator=generator)
        positions = gaps.cumsum_(0).add_(start)
        chunks.append(positions)
        start = int(positions[-1])
    seeds = torch.cat(chunks) if len(chunks) > 1 else chunks[0]
    end = int(torch.searchsorted(seeds, trials))
    return seeds[:end]


def seed_corners(seeds: torch.Tensor, geometry: Geometry) -> tuple[torch.Tensor, torch.Tensor]:
    """Split seed ids into (map index, per-dim corner coordinates).

    Returns ``maps`` (S,) and ``corners`` (S, ndim), both int64.
    """
    maps = torch.div(seeds, geometry.positions, rounding_mode="floor")
    rest = seeds - maps * geometry.positions
    coords = []
    for size in reversed(geometry.valid):
        coords.append(rest % size)
        rest = torch.div(rest, size, rounding_mode="floor")
    return maps, torch.stack(coords[::-1], dim=1)


def dropped_offsets(
    seeds: torch.Tensor, geometry: Geometry, strides: tuple[int, ...]
) -> torch.Tensor:
    """Element offsets (in units of ``strides``) of every dropped unit, duplicates included.

    Works for any dense or strided layout (channels_last, slices). Returns int64
    (S * C_shared * prod(block),).
    """
    n, c = geometry.shape[:2]
    maps, corners = seed_corners(seeds, geometry)
    spatial_strides = torch.tensor(strides[2:], dtype=torch.int64, device=seeds.device)
    base = (corners * spatial_strides).sum(dim=1)
    if geometry.shared_channels:
        channel = torch.arange(c, device=seeds.device) * strides[1]
        base = (base + maps * strides[0])[:, None] + channel[None, :]
    else:
        base = base + torch.div(maps, c, rounding_mode="floor") * strides[0]
        base = base + (maps % c) * strides[1]
    return (base.reshape(-1, 1) + block_offsets(geometry, strides, seeds.device)).reshape(-1)


def block_offsets(
    geometry: Geometry, strides: tuple[int, ...], device: torch.device
) -> torch.Tensor:
    """Offsets of the units of one block relative to its corner: int64 (prod(block),)."""
    offsets = torch.zeros(1, dtype=torch.int64, device=device)
    for size, stride in zip(geometry.block, strides[2:]):
        steps = torch.arange(size, dtype=torch.int64, device=device) * stride
        offsets = (offsets[:, None] + steps[None, :]).reshape(-1)
    return offsets


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
