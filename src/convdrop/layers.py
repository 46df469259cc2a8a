"""Thin ``nn.Module`` wrappers over :mod:`convdrop.ops.functional`.

Each layer stores its hyperparameters and calls one function. ``p`` is a plain
attribute so a :class:`convdrop.DropRateScheduler` (or you) can set it between
steps; nothing changes inside ``forward``. Under ``torch.compile`` and ``torch.export``
the layers pass ``p`` to the ops as a 0-dim CPU tensor, so a compiled model takes each
new ``p`` without recompiling.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import ClassVar

import torch
from torch import nn

from convdrop.ops import functional as F
from convdrop.ops import validate as v
from convdrop.ops.dispatch import compiling

__all__ = [
    "Cutout", "DropBlock1d", "DropBlock2d", "DropBlock3d", "Dropout", "Regularizer",
    "SpatialDropout",
]


class Regularizer(nn.Module):
    """Base of every convdrop layer whose strength is a drop probability ``p``.

    ``p`` is checked whenever it is set, so a bad value fails where it is assigned
    (by you or a scheduler), not at the next forward.
    """

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    @property
    def p(self) -> float:
        return self._p

    @p.setter
    def p(self, value: float) -> None:
        self._p = v.check_p(value)
        # What a compiled graph reads: a tensor input, not a constant baked into the graph
        # (a new tensor each time, so a graph's saved copy is never changed under it).
        self._rate = torch.tensor(self._p, dtype=torch.float64)

    def rate(self) -> float | torch.Tensor:
        """``p`` as the ops take it: the float, or its tensor under a compiler."""
        return self._rate if compiling() else self._p


class _DropBlockNd(Regularizer):
    spatial_dims: ClassVar[int]

    def __init__(
        self,
        p: float,
        block_size: int | Sequence[int],
        *,
        shared_channels: bool = False,
        calibrated: bool = True,
        scale: str = "batch",
        inplace: bool = False,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(p)
        block = v.check_block_size(block_size, self.spatial_dims)
        self.block_size = block_size if isinstance(block_size, int) else block
        self.shared_channels = shared_channels
        self.calibrated = calibrated
        self.scale = v.check_scale(scale)
        self.inplace = inplace
        v.check_generator(generator)
        self.generator = generator

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v.check_rank(tuple(x.shape), (self.spatial_dims + 2,))
        return F.drop_block(
            x, self.rate(), self.block_size, training=self.training,
            shared_channels=self.shared_channels, calibrated=self.calibrated, scale=self.scale,
            generator=self.generator, inplace=self.inplace,
        )

    def extra_repr(self) -> str:
        text = f"p={self.p}, block_size={self.block_size}"
        if self.shared_channels:
            text += ", shared_channels=True"
        if not self.calibrated:
            text += ", calibrated=False"
        if self.scale != "batch":
            text += f", scale={self.scale!r}"
        return text + (", inplace=True" if self.inplace else "")


class DropBlock1d(_DropBlockNd):
    """DropBlock over (N, C, L) inputs; see :func:`convdrop.drop_block`."""

    spatial_dims = 1


class DropBlock2d(_DropBlockNd):
    """DropBlock over (N, C, H, W) inputs; see :func:`convdrop.drop_block`."""

    spatial_dims = 2


class DropBlock3d(_DropBlockNd):
    """DropBlock over (N, C, D, H, W) inputs; see :func:`convdrop.drop_block`."""

    spatial_dims = 3


class _UnitDropout(Regularizer):
    """A rate and a generator around one of the unit-wise ops of :mod:`convdrop.ops.functional`."""

    op: ClassVar[Callable[..., torch.Tensor]]

    def __init__(self, p: float, *, generator: torch.Generator | None = None) -> None:
        super().__init__(p)
        v.check_generator(generator)
        self.generator = generator

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return type(self).op(x, self.rate(), training=self.training, generator=self.generator)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class SpatialDropout(_UnitDropout):
    """Drop whole channels of (N, C, *spatial) inputs; see :func:`convdrop.spatial_dropout`."""

    op = staticmethod(F.spatial_dropout)


class Dropout(_UnitDropout):
    """Element-wise dropout with a settable ``p``; see :func:`convdrop.dropout`."""

    op = staticmethod(F.dropout)


class Cutout(nn.Module):
    """Cutout augmentation on (N, C, H, W) or (C, H, W) images, only in training mode."""

    def __init__(
        self, size: int | Sequence[int], *, count: int = 1,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        v.check_block_size(size, 2, name="size")
        self.size = size
        self.count = v.check_positive_int(count, "count")
        v.check_generator(generator)
        self.generator = generator

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return images
        return F.cutout(images, self.size, count=self.count, generator=self.generator)

    def extra_repr(self) -> str:
        return f"size={self.size}, count={self.count}"
