"""Pure structured-dropout ops: DropBlock, spatial dropout, dropout and Cutout.

Why blocks: neighbouring activations of a conv layer are strongly correlated, so a
unit dropped alone is largely recoverable from its neighbours and plain dropout
barely regularizes conv layers. DropBlock (Ghiasi, Lin, Le, NeurIPS 2018,
arXiv 1810.12890) drops contiguous blocks instead; spatial dropout drops whole
channels (block = map); dropout is block size 1.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from convdrop.ops import dispatch as _dispatch
from convdrop.ops import validate as v
from convdrop.ops.autograd import Painter
from convdrop.ops.gamma import drop_seed_rate
from convdrop.ops.sampling import Geometry, sample_seeds

__all__ = [
    "block_mask", "cutout", "cutout_mask", "drop_block", "drop_path", "dropout",
    "spatial_dropout",
]


def _gamma(geometry: Geometry, p: float, calibrated: bool) -> float:
    """The seed rate; 0 for p == 1 (everything is dropped anyway, nothing need be drawn)."""
    return drop_seed_rate(geometry.spatial, geometry.block, p, calibrated)


def _split_p(p: float | torch.Tensor) -> tuple[float | None, torch.Tensor | None]:
    """``p`` as (a checked float, None) when running eagerly, or as (None, a 0-dim float64
    CPU tensor) under a compiler: the ops read that tensor when they run, so a compiled
    graph takes a new ``p`` (a layer's, or a float argument of the compiled function)
    without recompiling. The tensor is a copy, so a ``p`` changed before backward cannot
    change the mask."""
    if isinstance(p, torch.Tensor):
        v.check_rate_tensor(p)
        if not _dispatch.compiling():
            return v.check_p(float(p)), None
        return None, p.detach().to(torch.float64, copy=True)
    if _dispatch.compiling():
        # (a sum, not torch.tensor(p): a compiler keeps a float argument symbolic in it)
        return None, torch.zeros((), dtype=torch.float64) + p
    return v.check_p(p), None


def drop_block(
    x: torch.Tensor,
    p: float | torch.Tensor,
    block_size: int | Sequence[int],
    *,
    training: bool = True,
    shared_channels: bool = False,
    calibrated: bool = True,
    scale: str = "batch",
    generator: torch.Generator | None = None,
    inplace: bool = False,
) -> torch.Tensor:
    """DropBlock (Algorithm 1 of arXiv 1810.12890), exact and fast.

    Args:
        x (Tensor[N, C, L] | Tensor[N, C, H, W] | Tensor[N, C, D, H, W]): floating-point input.
        p: probability that a unit is dropped, in [0, 1]; a float, or a 0-dim CPU tensor
            (under ``torch.compile`` a graph then takes a new value without recompiling;
            the layers do this for you).
        block_size: block side, an int or one int per spatial dim, any size >= 1; clipped to
            the map. Block 1 is dropout; a block equal to the map drops whole channels.
        training: when False the input comes back unchanged (as it does for p == 0).
        shared_channels: one mask per sample instead of one per sample and channel.
        calibrated: solve the seed rate so the expected dropped fraction is exactly ``p``
            for this map and block; False uses the paper's gamma formula.
        scale: "batch" multiplies kept units by count / count_kept over the whole tensor;
            "expected" by 1 / (1 - p). If every unit is dropped the output is zeros. In
            float16 the batch factor saturates at the dtype's largest value (65504), and
            "expected" refuses a ``p`` whose factor float16 cannot hold.
        generator: source of randomness; the global RNG is left untouched when given.
        inplace: write the result into ``x``; refused (before anything is written) for a
            leaf that requires grad, or a view of one, as autograd would refuse it.

    Returns:
        Tensor of the same shape, dtype, device and memory layout as ``x``.

    On the CPU the seeds are sampled as sorted ids and applied by the fused kernel; on
    other devices the path is sync-free (no host sync, CUDA-graph capturable), see
    :mod:`convdrop.ops.dispatch`. ``torch.compile`` traces it without graph breaks.
    """
    v.check_float_tensor(x)
    v.check_rank(tuple(x.shape), (3, 4, 5))
    value, rate = _split_p(p)
    block = v.check_block_size(block_size, x.dim() - 2)
    if v.check_scale(scale) == "expected" and value is not None:
        v.check_expected_scale(value, x.dtype)
    v.check_generator(generator, x.device)
    v.check_inplace(x, inplace and training and (value is None or value > 0.0))
    if not training or value == 0.0 or x.numel() == 0:
        return x
    geometry = Geometry.of(tuple(x.shape), block, shared_channels)
    return _dispatch.drop_block(x, geometry, value if rate is None else rate, calibrated,
                                scale, generator, inplace)


def block_mask(
    shape: Sequence[int],
    p: float,
    block_size: int | Sequence[int],
    *,
    shared_channels: bool = False,
    calibrated: bool = True,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """The mask ``drop_block`` would apply, drawn on its own (for pictures and tests).

    With the same generator state, ``drop_block(x, ...)`` zeroes exactly these units.

    Args:
        shape: (N, C, L), (N, C, H, W) or (N, C, D, H, W).

    Returns:
        Tensor[bool] of ``shape``, True where dropped. With ``shared_channels`` the
        channels of a sample are identical (an expanded view).
    """
    shape = v.check_shape(shape, (3, 4, 5))
    p = v.check_p(p)
    block = v.check_block_size(block_size, len(shape) - 2)
    v.check_generator(generator, torch.device(device) if device is not None else None)
    if p >= 1.0 or math.prod(shape) == 0:
        return torch.full(shape, p >= 1.0, dtype=torch.bool, device=device)
    geometry = Geometry.of(shape, block, shared_channels)
    gamma = _gamma(geometry, p, calibrated)
    where = torch.device(device) if device is not None else torch.get_default_device()
    sync_free = _dispatch.block_mask(shape, geometry, gamma, generator, where)
    if sync_free is not None:
        return sync_free
    seeds = sample_seeds(geometry.trials, gamma, generator=generator, device=device)
    mask = torch.zeros(shape, dtype=torch.bool, device=device)
    painter = Painter.of(seeds, geometry, tuple(mask.stride()))
    if painter.mask is not None:
        return painter.mask.expand(shape)
    return painter.fill_(mask, True)


def _uniform(shape: Sequence[int], generator: torch.Generator | None,
             device: torch.device) -> torch.Tensor:
    """U[0, 1) draws; ``generator=None`` is not passed on (torch.compile rejects it with
    symbolic sizes)."""
    if generator is None:
        return torch.rand(shape, device=device)
    return torch.rand(shape, generator=generator, device=device)


def _keep_scaled(x: torch.Tensor, keep: torch.Tensor, p: float | torch.Tensor) -> torch.Tensor:
    """x * keep / (1 - p); zeros (never NaN) where dropped, also when p == 1. ``p`` may be
    a 0-dim CPU tensor (a compiled graph's rate)."""
    if isinstance(p, torch.Tensor):
        kept = x * torch.where(p < 1.0, 1.0 / (1.0 - p), 0.0)
    else:
        kept = x if p >= 1.0 else x * (1.0 / (1.0 - p))
    return torch.where(keep, kept, kept.new_zeros(()))


def _drop_units(x: torch.Tensor, p: float | torch.Tensor, noise_shape: Sequence[int],
                training: bool, generator: torch.Generator | None) -> torch.Tensor:
    """Keep each unit of ``noise_shape`` (broadcast over ``x``) with probability 1 - p."""
    value, rate = _split_p(p)
    v.check_generator(generator, x.device)
    if not training or value == 0.0:
        return x
    rate_or_value = value if rate is None else rate
    keep = _uniform(noise_shape, generator, x.device) >= rate_or_value
    return _keep_scaled(x, keep, rate_or_value)


def spatial_dropout(
    x: torch.Tensor, p: float | torch.Tensor, *, training: bool = True,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Drop whole channels with probability ``p``, scaling kept ones by 1 / (1 - p).

    Args:
        x (Tensor[N, C, *spatial]): with 1 to 3 spatial dims.
        p: a float, or a 0-dim CPU tensor (see :func:`drop_block`).

    Returns:
        Tensor of the same shape; a dropped channel is all zeros.
    """
    v.check_float_tensor(x)
    v.check_rank(tuple(x.shape), (3, 4, 5))
    noise_shape = (*x.shape[:2], *([1] * (x.dim() - 2)))
    return _drop_units(x, p, noise_shape, training, generator)


def dropout(
    x: torch.Tensor, p: float | torch.Tensor, *, training: bool = True,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Classic element-wise dropout with inverted scaling, one random draw per unit.

    Args:
        x (Tensor[...]): any floating-point tensor.
        p: a float, or a 0-dim CPU tensor (see :func:`drop_block`).
    """
    v.check_float_tensor(x)
    return _drop_units(x, p, x.shape, training, generator)


def drop_path(
    x: torch.Tensor, p: float | torch.Tensor, *, training: bool = True, mode: str = "row",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Stochastic depth (Huang et al. 2016): drop a residual branch per sample.

    Put it on a branch before the residual add; a dropped sample's branch is all zeros,
    a kept one is scaled by 1 / (1 - p), so the sum keeps its expected value.

    Args:
        x (Tensor[N, ...]): the branch's output.
        p: a float, or a 0-dim CPU tensor (see :func:`drop_block`).
        mode: "row" draws one keep per sample, "batch" one for the whole batch
            (torchvision's ``StochasticDepth`` modes).
    """
    v.check_float_tensor(x)
    if mode not in ("row", "batch"):
        raise ValueError(f"mode must be 'row' or 'batch', got {mode!r}")
    noise_shape = (x.shape[0] if mode == "row" else 1, *([1] * (x.dim() - 1)))
    return _drop_units(x, p, noise_shape, training, generator)


def cutout_mask(
    shape: Sequence[int],
    size: int | Sequence[int],
    *,
    count: int = 1,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Cutout patches (DeVries & Taylor 2017): bool (N, 1, H, W), True where cut.

    Each patch's centre is uniform over the image; the patch is clipped at the border.
    For even sides the extra row/column lies after the centre.

    Args:
        shape: (N, C, H, W).
    """
    shape = v.check_shape(shape, (4,))
    sides = v.check_block_size(size, 2, name="size")
    count = v.check_positive_int(count, "count")
    n, _, height, width = shape
    centres = [
        torch.randint(0, extent, (n, count, 1), generator=generator, device=device)
        for extent in (height, width)
    ]
    hit = []
    for centre, side, extent in zip(centres, sides, (height, width)):
        start = centre - (side - 1) // 2
        grid = torch.arange(extent, device=device)
        hit.append((grid >= start) & (grid < start + side))  # (N, count, extent)
    mask = (hit[0][..., :, None] & hit[1][..., None, :]).any(dim=1)  # (N, H, W)
    return mask[:, None]


def cutout(
    images: torch.Tensor,
    size: int | Sequence[int],
    *,
    count: int = 1,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Zero ``count`` square patches of each image (the same patch in every channel).

    Args:
        images (Tensor[N, C, H, W] | Tensor[C, H, W]): floating-point images.
        size: patch side, an int or (height, width).

    Returns:
        A new tensor of the same shape.
    """
    v.check_float_tensor(images, "images")
    v.check_rank(tuple(images.shape), (3, 4), name="images",
                 layouts=("3 (C, H, W): one image", "4 (N, C, H, W): a batch"))
    v.check_generator(generator, images.device)
    batched = images if images.dim() == 4 else images[None]
    mask = cutout_mask(
        batched.shape, size, count=count, generator=generator, device=images.device
    )
    out = batched.masked_fill(mask, 0)
    return out if images.dim() == 4 else out[0]
