"""DropBlock written with ``keras.ops`` and ``keras.random`` only.

One implementation for the JAX, TensorFlow and torch backends of Keras 3: every shape
is static, nothing is read back to the host, and the same code runs eagerly, under
``jax.jit``, ``tf.function`` and the torch backend. Seeds fall only where a whole block
fits (the valid region), per sample and channel by default; each grows into a block that
starts at its seed's corner, painted one axis at a time by an OR over a window of the
bool seed grid (built by doubling: about log2(k) passes per axis).

The seed rate is convdrop's own (:mod:`convdrop.ops.gamma`, the calibration the PyTorch
ops use), solved on the host in float64 for the map and block at hand and handed to the
graph as an integer threshold: a valid slot is a seed when a uniform 31-bit draw falls
below ``round(gamma * (2**31 - 1))``, so the seed rate is gamma to within 2**-31. (A
float32 uniform would round gamma to a multiple of 2**-24 or 2**-23: at gamma = 1e-7,
about 20 % off.)

Reference: Ghiasi, Lin, Le, "DropBlock", NeurIPS 2018 (arXiv 1810.12890), Algorithm 1.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
from keras import ops

from convdrop.ops import validate as v
from convdrop.ops.gamma import clip_block, drop_seed_rate

__all__ = ["DRAWS", "apply_drop", "block_mask", "check_data_format", "drop_block",
           "dropped_mask", "seed_threshold", "split_shape"]

DRAWS = 2**31 - 1  # a seed draw is uniform on {0, ..., DRAWS - 1}
FORMATS = ("channels_last", "channels_first")


def check_data_format(data_format: str | None) -> str:
    """``data_format``, or Keras's ``image_data_format()`` (channels_last unless set) for None."""
    if data_format is None:
        return keras.config.image_data_format()
    if data_format not in FORMATS:
        raise ValueError(f"data_format must be one of {FORMATS} or None, got {data_format!r}")
    return data_format


def split_shape(shape: Sequence[Any], data_format: str, spatial_dims: int,
                name: str = "x") -> tuple[Any, tuple[Any, ...], Any]:
    """(batch, spatial sizes, channels) of a ``data_format`` shape with ``spatial_dims`` sides."""
    shape = tuple(shape)
    if len(shape) != spatial_dims + 2:
        layout = ", ".join(["N", *"DHW"[3 - spatial_dims:]]) if spatial_dims > 1 else "N, L"
        layout = f"({layout}, C)" if data_format == "channels_last" else \
            f"(N, C, {layout[3:]})"
        raise ValueError(f"{name} must have {spatial_dims + 2} dimensions {layout} "
                         f"({data_format}), got shape {shape}")
    if data_format == "channels_last":
        return shape[0], shape[1:-1], shape[-1]
    return shape[0], shape[2:], shape[1]


def seed_threshold(spatial: tuple[int, ...], block: tuple[int, ...], rate: float,
                   calibrated: bool) -> int:
    """``round(gamma * DRAWS)`` for the seed rate of ``drop_block`` (host side, float64).

    ``block`` is clipped to the map here. At ``rate >= 1`` every slot is a seed, which
    drops every unit (each unit is covered by at least one valid slot).
    """
    clipped = clip_block(spatial, block)
    if rate >= 1.0:
        return DRAWS
    gamma = drop_seed_rate(spatial, clipped, rate, calibrated)
    return min(DRAWS, round(gamma * DRAWS))


def _take(x: Any, axis: int, start: int, stop: int) -> Any:
    return x[(slice(None),) * axis + (slice(start, stop),)]


def _zero_pad(seeds: Any, axis: int, width: int) -> Any:
    """``width`` False entries before and after ``seeds`` along ``axis``. (Not ``ops.pad``:
    it builds a named Keras operation on every call, so torch.compile recompiles.)"""
    edge = ops.repeat(ops.zeros_like(_take(seeds, axis, 0, 1)), width, axis=axis)
    return ops.concatenate([edge, seeds, edge], axis=axis)


def _grow(seeds: Any, block: tuple[int, ...]) -> Any:
    """(M, *valid, C) bool seeds -> (M, *spatial, C) bool, True where a block covers the unit.

    Along each axis unit ``u`` is covered by the seeds at ``u - k + 1 .. u``: an OR over a
    window of ``k`` of the zero-padded seeds, built by doubling (windows 1, 2, 4, ...,
    then two overlapping ones), so a side of 7 costs 3 passes over a bool tensor, not 7.
    """
    for axis, k in enumerate(block, start=1):
        if k == 1:
            continue
        side = seeds.shape[axis] + k - 1  # the map's side
        covered, window = _zero_pad(seeds, axis, k - 1), 1
        while 2 * window <= k:
            length = covered.shape[axis]
            covered = ops.logical_or(_take(covered, axis, 0, length - window),
                                     _take(covered, axis, window, length))
            window *= 2
        seeds = _take(covered, axis, 0, side)
        if window < k:
            seeds = ops.logical_or(seeds, _take(covered, axis, k - window, k - window + side))
    return seeds


def dropped_mask(batch: Any, spatial: tuple[int, ...], channels: int, block: tuple[int, ...],
                 threshold: Any, *, data_format: str, shared_channels: bool, seed: Any) -> Any:
    """Bool mask, True where dropped, in the input's layout with channels 1 if shared.

    Args:
        batch: N, an int (or a scalar tensor where the batch size is dynamic, under TF).
        threshold: an int or int32 scalar tensor from :func:`seed_threshold`.
        seed: an int, a ``keras.random.SeedGenerator`` or None, as ``keras.random`` takes.

    Returns:
        (N, *spatial, C') for channels_last, (N, C', *spatial) for channels_first, where
        C' = 1 with ``shared_channels`` and C otherwise.
    """
    block = clip_block(spatial, block)
    maps = 1 if shared_channels else channels
    valid = tuple(s - k + 1 for s, k in zip(spatial, block))
    last = data_format == "channels_last"
    grid = (batch, *valid, maps) if last else (batch * maps, *valid, 1)
    draws = keras.random.randint(grid, 0, DRAWS, dtype="int32", seed=seed)
    dropped = _grow(ops.less(draws, threshold), block)
    return dropped if last else ops.reshape(dropped, (-1, maps, *spatial))


def _largest(dtype: Any) -> float:
    """The largest finite value of ``dtype`` (a kept unit's factor saturates there)."""
    name = keras.backend.standardize_dtype(dtype)
    if name == "bfloat16":
        return float(np.finfo(np.float32).max) * (1 - 2.0**-8)
    return float(np.finfo(name).max)


def apply_drop(x: Any, dropped: Any, rate: Any, scale: str) -> Any:
    """Zeros where ``dropped``, elsewhere ``x * factor``: "batch" scales by count /
    count_kept over the whole tensor (counted exactly, divided in float32), "expected" by
    1 / (1 - rate); all zeros, never NaN, when every unit drops.

    Args:
        x: the input; dropped: :func:`dropped_mask`'s output, broadcastable to it.
        rate: a float or a float32 scalar tensor (a layer's rate variable).
    """
    if scale == "batch":
        total = ops.cast(ops.size(dropped), "float32")
        # Counted per (sample, first spatial row), then summed: a 2-d count is Keras's
        # fastest exact count on every backend without the torch backend's transpose warning.
        counts = ops.count_nonzero(dropped, axis=tuple(range(2, len(dropped.shape))))
        kept = total - ops.cast(ops.sum(counts), "float32")
        factor = ops.divide_no_nan(total, kept)
    else:
        factor = ops.divide_no_nan(1.0, 1.0 - ops.cast(rate, "float32"))
    factor = ops.cast(ops.minimum(factor, _largest(x.dtype)), x.dtype)
    return ops.where(dropped, ops.zeros((), x.dtype), ops.multiply(x, factor))


def _check(rate: float, block_size: int | Sequence[int], spatial_dims: int,
           data_format: str | None, scale: str = "batch") -> tuple[float, tuple[int, ...], str]:
    v.check_scale(scale)
    return (v.check_p(rate, "rate"), v.check_block_size(block_size, spatial_dims),
            check_data_format(data_format))


def drop_block(x: Any, rate: float, block_size: int | Sequence[int], *, training: bool = True,
               data_format: str | None = None, shared_channels: bool = False,
               calibrated: bool = True, scale: str = "batch", seed: Any = None) -> Any:
    """DropBlock on a Keras tensor of 1 to 3 spatial dims; the functional form of the layers.

    Args:
        x: (N, *spatial, C) for channels_last (Keras's default), (N, C, *spatial) for
            channels_first; the spatial sizes must be static.
        rate: probability that a unit is dropped, in [0, 1] (the PyTorch ops' ``p``).
        block_size: an int or one int per spatial dim, any size >= 1; clipped to the map.
        seed: an int (the same draw on every call), a ``keras.random.SeedGenerator``
            (a new draw each call) or None.

    Returns:
        A tensor like ``x``; ``x`` itself when not ``training`` or at ``rate == 0``.
    """
    x = ops.convert_to_tensor(x)
    dims = len(x.shape) - 2
    if dims not in (1, 2, 3):
        raise ValueError(f"x must have 3, 4 or 5 dimensions, got shape {tuple(x.shape)}")
    rate, block, data_format = _check(rate, block_size, dims, data_format, scale)
    if not training or rate == 0.0:
        return x
    batch, spatial, channels = split_shape(x.shape, data_format, dims)
    threshold = seed_threshold(tuple(spatial), block, rate, calibrated)
    dropped = dropped_mask(ops.shape(x)[0] if batch is None else batch, tuple(spatial),
                           channels, block, threshold, data_format=data_format,
                           shared_channels=shared_channels, seed=seed)
    return apply_drop(x, dropped, rate, scale)


def block_mask(shape: Sequence[int], rate: float, block_size: int | Sequence[int], *,
               data_format: str | None = None, shared_channels: bool = False,
               calibrated: bool = True, seed: Any = None) -> Any:
    """The mask :func:`drop_block` applies, on its own (for pictures and tests).

    Args:
        shape: (N, *spatial, C) or (N, C, *spatial) per ``data_format``, static ints.

    Returns:
        A bool tensor of ``shape``, True where dropped.
    """
    shape = v.check_shape(shape, (3, 4, 5))
    rate, block, data_format = _check(rate, block_size, len(shape) - 2, data_format)
    batch, spatial, channels = split_shape(shape, data_format, len(shape) - 2, "shape")
    if rate >= 1.0 or math.prod(shape) == 0:
        return ops.full(shape, rate >= 1.0, dtype="bool")
    threshold = seed_threshold(spatial, block, rate, calibrated)
    dropped = dropped_mask(batch, spatial, channels, block, threshold, data_format=data_format,
                           shared_channels=shared_channels, seed=seed)
    return ops.broadcast_to(dropped, shape)
