"""Dense reference DropBlock: the test oracle for the fast path.

It follows Algorithm 1 literally: one uniform draw per valid seed position, then
every seed grows into a block by a transposed convolution with a ones kernel, and
a dense float mask multiplies the input under ordinary autograd. It shares only the
seed rate and geometry with the fast path, never the sampling or the painting.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from convdrop.ops.autograd import scale_factor
from convdrop.ops.gamma import seed_rate
from convdrop.ops.sampling import Geometry

_CONV_T = (F.conv_transpose1d, F.conv_transpose2d, F.conv_transpose3d)


def paint_seed_grid(seed_grid: torch.Tensor, block: tuple[int, ...]) -> torch.Tensor:
    """Grow seeds into blocks.

    Args:
        seed_grid (Tensor[M, *valid] bool): True at a block's first corner.
        block: block sides; the map is ``valid + block - 1`` per dim.

    Returns:
        Tensor[M, *spatial] bool, True where dropped.
    """
    seeds = seed_grid.to(torch.float32)[:, None]
    ones = torch.ones((1, 1, *block), dtype=torch.float32, device=seed_grid.device)
    covered = _CONV_T[len(block) - 1](seeds, ones)
    return covered[:, 0] > 0.5


def reference_block_mask(
    shape: Sequence[int], p: float, block_size: tuple[int, ...], *,
    shared_channels: bool = False, calibrated: bool = True,
    generator: torch.Generator | None = None, device: torch.device | str | None = None,
) -> torch.Tensor:
    """Bool (N, C, *spatial) mask, True where dropped, drawn densely."""
    geometry = Geometry.of(tuple(shape), tuple(block_size), shared_channels)
    gamma = seed_rate(geometry.spatial, geometry.block, p, calibrated)
    draws = torch.rand((geometry.maps, *geometry.valid), generator=generator, device=device)
    mask = paint_seed_grid(draws < gamma, geometry.block)
    n, c = geometry.shape[:2]
    return mask.view(n, 1 if shared_channels else c, *geometry.spatial).expand(geometry.shape)


def reference_drop_block(
    x: torch.Tensor, p: float, block_size: tuple[int, ...], *,
    shared_channels: bool = False, calibrated: bool = True, scale: str = "batch",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Dense DropBlock: ``x * keep * scale`` with a float mask kept by autograd."""
    mask = reference_block_mask(
        x.shape, p, block_size, shared_channels=shared_channels, calibrated=calibrated,
        generator=generator, device=x.device,
    )
    factor = scale_factor(scale, p, mask.numel(), int(mask.sum()))
    return x * ((~mask).to(x.dtype) * factor)
