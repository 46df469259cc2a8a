"""The DropBlock autograd function: one scaled pass with the blocks zeroed, seeds saved.

Two painters apply a seed set. On contiguous float32/float64 CPU tensors the fused
kernel (:mod:`convdrop.ops.native`) scales each map and zeroes its blocks while the map
is in cache, one streaming pass. For other CPU tensors (half types, other layouts, or
no compiled kernel) the PyTorch-level path writes ``x * scale`` and then zeroes the
blocks by index. Both give the same bits. (Other devices take the sync-free paths of
:mod:`convdrop.ops.dispatch`; the sampler here asks the device for sizes.)

Backward zeroes the same units of the scaled gradient, so no float (or bool) mask is
ever kept for backward: the fused path saves the seed ids, the PyTorch path the
blocks' corner offsets, 8 bytes per block, about ``gamma * positions / volume * 2``
of an fp32 input's bytes (≈ 0.5 % at p = 0.1, block 7 on 14x14 maps). When blocks
are dense (high p) the PyTorch path saves the seed ids and rebuilds the mask by
max-pooling.
"""

from __future__ import annotations

from typing import Any

import torch

from convdrop.ops import native as _native
from convdrop.ops.sampling import (
    Geometry,
    block_starts,
    count_dropped,
    dense_mask,
    fill_rows_,
    use_dense,
)


class Painter:
    """The dropped units of one seed set, for tensors laid out with ``strides``.

    Sparse sets keep their blocks' corner offsets and are painted row by row; dense
    ones (more block units than tensor units) are painted by a max-pool mask.
    """

    def __init__(self, saved: torch.Tensor, geometry: Geometry, dense: bool) -> None:
        self.saved, self.geometry, self.dense = saved, geometry, dense
        self.mask = dense_mask(saved, geometry) if dense else None

    @staticmethod
    def of(seeds: torch.Tensor, geometry: Geometry, strides: tuple[int, ...]) -> Painter:
        if use_dense(seeds, geometry):
            return Painter(seeds, geometry, True)
        return Painter(block_starts(seeds, geometry, strides), geometry, False)

    def fill_(self, target: torch.Tensor, value: float | bool = 0) -> torch.Tensor:
        """Set the dropped units of ``target`` (laid out with the painter's strides)."""
        if self.mask is not None:
            return target.masked_fill_(self.mask, value)
        return fill_rows_(target, self.saved, self.geometry, value)

    def apply(self, source: torch.Tensor, out: torch.Tensor, scale: float) -> torch.Tensor:
        """out = source * scale, then the dropped units zeroed."""
        torch.mul(source, scale, out=out)
        return self.fill_(out)


class FusedPainter:
    """A seed set applied by the fused CPU kernel; ``saved`` holds the seed ids."""

    dense = False

    def __init__(self, seeds: torch.Tensor, geometry: Geometry) -> None:
        self.saved, self.geometry = seeds, geometry

    def apply(self, source: torch.Tensor, out: torch.Tensor, scale: float) -> torch.Tensor:
        """out = source * scale with the blocks zeroed, in one pass over the maps."""
        return _native.apply(source, out, self.saved, self.geometry, scale)


def scale_factor(scale: str, p: float, numel: int, dropped: int | None) -> float:
    """Multiplier for kept units; 0.0 means every unit is dropped (output zeros, never NaN)."""
    if p >= 1.0:
        return 0.0
    if scale == "expected":
        return 1.0 / (1.0 - p)
    kept = numel - dropped
    return numel / kept if kept > 0 else 0.0


def _count(seeds: torch.Tensor, painter: Painter | FusedPainter, out: torch.Tensor) -> int:
    """Distinct dropped units: by the kernel from the seeds alone when it is built, else
    from the dense mask, by painting a bool copy of the layout when maps hold several
    seeds each, or in closed form from the seeds."""
    geometry = painter.geometry
    if _native.counts(seeds):
        return _native.count(seeds, geometry)
    if painter.mask is not None:
        shared = geometry.shape[1] if geometry.shared_channels else 1
        return int(painter.mask.count_nonzero()) * shared
    if seeds.numel() > geometry.maps:  # crowded maps: one bool pass beats per-map algebra
        hit = torch.empty_strided(out.shape, out.stride(), dtype=torch.bool, device=out.device)
        return int(painter.fill_(hit.zero_(), True).count_nonzero())
    return count_dropped(seeds, geometry)


def _resolve_scale(scale: str, p: float, seeds: torch.Tensor,
                   painter: Painter | FusedPainter, out: torch.Tensor) -> float:
    """The forward's multiplier; counting distinct dropped units only for "batch".

    Saturated at ``out``'s largest value rather than overflowing: float16 holds factors up
    to 65504 only."""
    if p >= 1.0 or scale == "expected":
        factor = scale_factor(scale, p, painter.geometry.numel, None)
    else:
        factor = scale_factor(scale, p, painter.geometry.numel, _count(seeds, painter, out))
    return min(factor, torch.finfo(out.dtype).max)


def _painter(seeds: torch.Tensor, geometry: Geometry, source: torch.Tensor,
             out: torch.Tensor) -> Painter | FusedPainter:
    """The fused kernel where it handles both tensors, else the PyTorch-level painter."""
    if _native.handles(source) and _native.handles(out):
        return FusedPainter(seeds, geometry)
    return Painter.of(seeds, geometry, tuple(out.stride()))


def _apply(source: torch.Tensor, out: torch.Tensor, painter: Painter | FusedPainter | None,
           scale: float) -> torch.Tensor:
    """out = source * scale with the dropped units zeroed (all zeros when scale is 0)."""
    if painter is None or scale == 0.0:
        return out.zero_()
    return painter.apply(source, out, scale)


def _scale_into(x: torch.Tensor, out: torch.Tensor, seeds: torch.Tensor, geometry: Geometry,
                scale: str, p: float) -> tuple[Painter | FusedPainter | None, float]:
    """out = x * factor with the seeds' blocks zeroed; returns (the painter, the factor)."""
    painter = None if p >= 1.0 else _painter(seeds, geometry, x, out)
    factor = 0.0 if painter is None else _resolve_scale(scale, p, seeds, painter, out)
    _apply(x, out, painter, factor)
    return painter, factor


class DropBlockFunction(torch.autograd.Function):
    """y = x * scale * keep_mask; backward zeroes the same units of the gradient."""

    @staticmethod
    def forward(
        ctx: Any, x: torch.Tensor, seeds: torch.Tensor, geometry: Geometry,
        scale: str, p: float, inplace: bool,
    ) -> torch.Tensor:
        out = x if inplace else torch.empty_like(x)
        painter, ctx.scale = _scale_into(x, out, seeds, geometry, scale, p)
        ctx.geometry, ctx.strides = geometry, tuple(out.stride())
        ctx.fused = isinstance(painter, FusedPainter)
        ctx.dense = painter is not None and painter.dense
        ctx.save_for_backward(painter.saved if painter is not None else seeds)
        if inplace:
            ctx.mark_dirty(x)
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        (saved,) = ctx.saved_tensors
        if ctx.fused:  # seeds were saved: any painter can be rebuilt for the gradient
            return grad_seeds(grad, saved, ctx.geometry, ctx.scale), None, None, None, None, None
        # Same layout as the forward output, so the saved corner offsets apply as they are.
        grad_in = torch.empty_strided(grad.shape, ctx.strides, dtype=grad.dtype,
                                      device=grad.device)
        painter = Painter(saved, ctx.geometry, ctx.dense) if ctx.scale != 0.0 else None
        return _apply(grad, grad_in, painter, ctx.scale), None, None, None, None, None


def apply_seeds(x: torch.Tensor, seeds: torch.Tensor, geometry: Geometry, scale: str,
                p: float) -> tuple[torch.Tensor, float]:
    """DropBlockFunction's forward without autograd (for the registered CPU op).

    Returns (out like ``x``, the multiplier of kept units).
    """
    out = torch.empty_like(x)
    return out, _scale_into(x, out, seeds, geometry, scale, p)[1]


def grad_seeds(grad: torch.Tensor, seeds: torch.Tensor, geometry: Geometry,
               factor: float) -> torch.Tensor:
    """grad (N, C, *spatial) -> a contiguous grad * factor with the seeds' blocks zeroed."""
    grad = grad.contiguous()
    grad_in = torch.empty_like(grad)
    painter = None if factor == 0.0 else _painter(seeds, geometry, grad, grad_in)
    return _apply(grad, grad_in, painter, factor)
