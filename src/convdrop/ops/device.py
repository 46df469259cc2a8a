"""The generic DropBlock path: tensor ops only, no host sync, any device.

On a GPU every question the host asks the device (``.item()``, ``int(t)``, a size that
depends on data) stalls the stream, blocks CUDA-graph capture and breaks
``torch.compile`` graphs. This path asks none, which is proven on the CPU by running
it on ``meta`` tensors (they have no data, so any such question raises):

1. one uniform draw per valid position, ``seeds = U < gamma``: bool (maps, *valid);
   U is a 31-bit integer compared with ``round(gamma * 2**31)``, so rates are exact to
   2**-31 (float32 ``rand`` would round gamma to 2**-24);
2. blocks painted by a separable dilation of the seed grid, one dimension at a time on
   bytes (the same mask as ``sampling.dense_mask``'s max-pool);
3. kept units counted on the device, and the batch factor a 0-dim float32 device tensor,
   ``where(kept > 0, numel / kept, 0)``; then ``out = x * factor`` with the blocks zeroed.

Backward keeps the seed map bit-packed (1 bit per valid position, the whole tensor's
map padded to a multiple of 8) and the 4-byte factor: ``ceil(maps * positions / 8) + 4``
bytes, e.g. 1.0 % of a float32 32x1024x14x14 input at block 7 (64 positions per
196-unit map), 0.06 % at 7x7 maps (one position) and 1.2 % at 16x16 (100 positions).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from convdrop.ops.sampling import Geometry

_BITS = 31  # random bits per valid position
_HALF_TYPES = (torch.float16, torch.bfloat16)


def draw_bits(geometry: Geometry, generator: torch.Generator | None,
              device: torch.device | str | None) -> torch.Tensor:
    """One 31-bit uniform integer per valid position: int32 (maps, *valid)."""
    shape = (geometry.maps, *geometry.valid)
    if generator is None:  # torch.compile rejects an explicit generator=None on some paths
        return torch.randint(0, 1 << _BITS, shape, dtype=torch.int32, device=device)
    return torch.randint(0, 1 << _BITS, shape, dtype=torch.int32, generator=generator,
                         device=device)


def seeds_below(draws: torch.Tensor, gamma: float) -> torch.Tensor:
    """int32 draws of :func:`draw_bits` -> bool seeds, each True with probability gamma."""
    threshold = min(1 << _BITS, round(gamma * (1 << _BITS)))
    return draws <= threshold - 1  # fits int32 when threshold is 2**31 (gamma == 1)


def draw_seed_map(geometry: Geometry, gamma: float, generator: torch.Generator | None,
                  device: torch.device | str | None) -> torch.Tensor:
    """Each valid position is a seed with probability ``gamma``: bool (maps, *valid)."""
    return seeds_below(draw_bits(geometry, generator, device), gamma)


def pack_bits(seeds: torch.Tensor) -> torch.Tensor:
    """Bool (any shape) -> uint8 (ceil(numel / 8),), bit ``i % 8`` of byte ``i // 8``."""
    flat = seeds.reshape(-1)
    pad = -flat.numel() % 8
    flat = F.pad(flat.to(torch.uint8), (0, pad)).view(-1, 8)
    shifts = torch.arange(8, dtype=torch.uint8, device=flat.device)  # no host-to-device copy
    return (flat << shifts).sum(dim=1, dtype=torch.uint8)


def unpack_bits(bits: torch.Tensor, geometry: Geometry) -> torch.Tensor:
    """Inverse of :func:`pack_bits` for a seed map of ``geometry``: bool (maps, *valid)."""
    shifts = torch.arange(8, dtype=torch.uint8, device=bits.device)
    flat = ((bits[:, None] >> shifts) & 1).reshape(-1)[: geometry.trials]
    return flat.view(geometry.maps, *geometry.valid).bool()


def _dilate(grid: torch.Tensor, dim: int, k: int) -> torch.Tensor:
    """Bool ``grid`` grown by ``k - 1`` along ``dim``: unit ``u`` is set when any of
    ``grid[u - k + 1 .. u]`` is (a 1d max-pool of the grid padded by ``k - 1``)."""
    pad = [0, 0] * (grid.dim() - 1 - dim) + [k - 1, k - 1]
    padded = F.pad(grid.to(torch.uint8), pad)
    return padded.unfold(dim, k, 1).amax(dim=-1).bool()


def paint(seeds: torch.Tensor, geometry: Geometry) -> torch.Tensor:
    """Bool (maps, *valid) seed map -> bool (N, C or 1, *spatial), True = dropped.

    A seed at corner ``c`` drops ``[c, c + block)``: a max-pool of the seed grid padded
    by ``block - 1`` on each side, done one dimension at a time (``2 k`` reads a unit
    instead of ``k ** 2``, on bytes, with no per-call thread start-up on the CPU).
    """
    n, c = geometry.shape[:2]
    grid = seeds
    for axis, k in enumerate(geometry.block):
        if k > 1:
            grid = _dilate(grid, 1 + axis, k)
    channels = 1 if geometry.shared_channels else c
    return grid.view(n, channels, *geometry.spatial)


def batch_factor(dropped: torch.Tensor, geometry: Geometry, scale: str,
                 p: float) -> torch.Tensor:
    """The multiplier of kept units: a 0-dim float32 tensor on ``dropped``'s device.

    "batch": numel / kept over the whole tensor, 0 when nothing is kept (zeros, never NaN);
    "expected": 1 / (1 - p); 0 when p == 1.
    """
    device = dropped.device
    if p >= 1.0:
        return torch.zeros((), dtype=torch.float32, device=device)
    if scale == "expected":
        return torch.full((), 1.0 / (1.0 - p), dtype=torch.float32, device=device)
    shared = geometry.shape[1] if geometry.shared_channels else 1
    kept = geometry.numel - dropped.sum(dtype=torch.int64) * shared  # 0-dim int64
    kept = kept.to(torch.float32)
    return torch.where(kept > 0, geometry.numel / kept.clamp(min=1.0), 0.0)


def scaled_and_zeroed(source: torch.Tensor, dropped: torch.Tensor,
                      factor: torch.Tensor) -> torch.Tensor:
    """source * factor with the dropped units zeroed, in ``source``'s dtype and layout.

    Half types are scaled in float32 (a float32 0-dim tensor would be rounded to the
    half type first, biasing the scale by up to 2**-9 for bfloat16).
    """
    if source.dtype in _HALF_TYPES:
        out = (source.float() * factor).to(source.dtype)
    else:
        out = source * factor
    return out.masked_fill_(dropped, 0)


def forward(x: torch.Tensor, seeds: torch.Tensor, geometry: Geometry, scale: str,
            p: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """x (N, C, *spatial), seeds bool (maps, *valid) -> (out like x, factor 0-dim float32,
    bit-packed seeds uint8 (ceil(trials / 8),))."""
    dropped = paint(seeds, geometry)
    # Saturate rather than overflow: float16 holds factors up to 65504 only.
    limit = torch.finfo(x.dtype if x.dtype != torch.float64 else torch.float32).max
    factor = batch_factor(dropped, geometry, scale, p).clamp(max=limit)
    return scaled_and_zeroed(x, dropped, factor), factor, pack_bits(seeds)


def backward(grad: torch.Tensor, bits: torch.Tensor, geometry: Geometry,
             factor: torch.Tensor) -> torch.Tensor:
    """grad (N, C, *spatial) -> grad * factor with the forward's dropped units zeroed."""
    dropped = paint(unpack_bits(bits, geometry), geometry)
    return scaled_and_zeroed(grad, dropped, factor)


def saved_bytes(geometry: Geometry) -> int:
    """Bytes kept for backward: the packed seed map and the factor."""
    return math.ceil(geometry.trials / 8) + 4
