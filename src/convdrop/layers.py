"""Thin ``nn.Module`` wrappers over :mod:`convdrop.ops.functional`.

Each layer stores its hyperparameters and calls one function. ``p`` is a plain
attribute so a :class:`convdrop.DropRateScheduler` (or you) can set it between
steps; nothing changes inside ``forward``. Under ``torch.compile`` and ``torch.export``
the layers pass ``p`` to the ops as a 0-dim CPU tensor, so a compiled model takes each
new ``p`` without recompiling (``DropPath`` passes the float: a new ``p`` recompiles).

Compilers and tracers:

- ``torch.fx.symbolic_trace`` records each layer as one ``call_module`` node, so the
  traced graph calls the same layer object and a scheduler still drives its ``p``.
- ``torch.jit.script`` compiles every layer for inference: in eval mode (or at p = 0)
  it returns its input, as the eager layer does; a scripted layer called in training
  mode raises, since the ops solve the seed rate in Python. Train with eager mode or
  ``torch.compile``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import ClassVar

import torch
import torch.fx
from torch import nn

from convdrop.ops import functional as F
from convdrop.ops import validate as v
from convdrop.ops.dispatch import compiling

__all__ = [
    "Cutout", "DropBlock1d", "DropBlock2d", "DropBlock3d", "DropPath", "Dropout", "Regularizer",
    "SpatialDropout", "timm_drop_block",
]


def _fx_node(module: nn.Module, x: torch.fx.Proxy) -> torch.fx.Proxy:
    """Under ``torch.fx`` symbolic tracing: one ``call_module`` node for this layer."""
    tracer = x.tracer
    return tracer.create_proxy("call_module", tracer.path_of_module(module), (x,), {})


def _inference_only(x: torch.Tensor, active: bool) -> torch.Tensor:
    """A scripted layer's forward: the input in eval mode, an error if it should drop."""
    if active:
        raise RuntimeError("a TorchScript-compiled convdrop layer runs in eval mode only "
                           "(or at p=0); train the eager or torch.compile'd model instead")
    return x


class Regularizer(nn.Module):
    """Base of every convdrop layer whose strength is a drop probability ``p``.

    ``p`` is checked whenever it is set, so a bad value fails where it is assigned
    (by you or a scheduler), not at the next forward.
    """

    __jit_unused_properties__ = ["p"]  # TorchScript reads ``_p``; the setter checks in Python

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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.jit.is_scripting():
            return _inference_only(x, self.training and self._p > 0.0)
        else:
            if isinstance(x, torch.fx.Proxy):
                return _fx_node(self, x)
            return self._drop(x)

    def _drop(self, x: torch.Tensor) -> torch.Tensor:
        """The layer's op on ``x``, eagerly or under torch.compile (not fx, not scripting)."""
        raise NotImplementedError

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

    def _drop(self, x: torch.Tensor) -> torch.Tensor:
        v.check_rank(tuple(x.shape), (self.spatial_dims + 2,))
        return F.drop_block(
            x, self.rate(), self.block_size, training=self.training,
            shared_channels=self.shared_channels, calibrated=self.calibrated,
            scale=self.scale, generator=self.generator, inplace=self.inplace,
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

    def _drop(self, x: torch.Tensor) -> torch.Tensor:
        return type(self).op(x, self.rate(), training=self.training, generator=self.generator)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class SpatialDropout(_UnitDropout):
    """Drop whole channels of (N, C, *spatial) inputs; see :func:`convdrop.spatial_dropout`."""

    op = staticmethod(F.spatial_dropout)


class Dropout(_UnitDropout):
    """Element-wise dropout with a settable ``p``; see :func:`convdrop.dropout`."""

    op = staticmethod(F.dropout)


class DropPath(Regularizer):
    """Stochastic depth on a residual branch of (N, ...) inputs; see :func:`convdrop.drop_path`.

    Args:
        p: probability that a sample's branch is dropped.
        mode: "row" (one draw per sample, timm's ``DropPath``) or "batch".
    """

    def __init__(self, p: float, *, mode: str = "row",
                 generator: torch.Generator | None = None) -> None:
        super().__init__(p)
        if mode not in ("row", "batch"):
            raise ValueError(f"mode must be 'row' or 'batch', got {mode!r}")
        self.mode = mode
        v.check_generator(generator)
        self.generator = generator

    def _drop(self, x: torch.Tensor) -> torch.Tensor:
        return F.drop_path(x, self.rate(), training=self.training, mode=self.mode,
                           generator=self.generator)

    def extra_repr(self) -> str:
        return f"p={self.p}" + (", mode='batch'" if self.mode == "batch" else "")


_TIMM_RETIRED = ("batchwise", "fast")  # arguments timm 1.0.23 removed and still accepts


def timm_drop_block(
    drop_prob: float = 0.1, block_size: int = 7, gamma_scale: float = 1.0,
    with_noise: bool = False, inplace: bool = False, couple_channels: bool = True,
    scale_by_keep: bool = True, **retired: object,
) -> DropBlock2d:
    """A convdrop :class:`DropBlock2d` built from timm's ``DropBlock2d`` arguments.

    A drop-in for timm's layer in ``partial(DropBlock2d, drop_prob=..., block_size=5,
    gamma_scale=0.25)``-style stage factories. timm scales its seed rate by
    ``gamma_scale``, so the calibrated rate here is ``drop_prob * gamma_scale``: the
    fraction this layer really drops, on any map size. ``couple_channels`` (timm's
    default True) shares one mask across channels; pass False for the paper's
    per-channel masks. Gaussian noise and unscaled output are not supported.
    """
    unknown = sorted(set(retired) - set(_TIMM_RETIRED))
    if unknown:
        raise ValueError(f"timm_drop_block got unknown argument(s) {unknown}; expected timm "
                         f"DropBlock2d's (drop_prob, block_size, gamma_scale, ...)")
    if with_noise:
        raise ValueError("with_noise must be False: convdrop zeroes dropped blocks, got True")
    if not scale_by_keep:
        raise ValueError("scale_by_keep must be True: convdrop always rescales kept units, "
                         "got False")
    v.check_number(gamma_scale, "gamma_scale", 0, math.inf, expected="a number >= 0")
    p = v.check_p(drop_prob, "drop_prob") * gamma_scale
    return DropBlock2d(v.check_p(p, "drop_prob * gamma_scale"), block_size,
                       shared_channels=couple_channels, inplace=inplace)


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
        if torch.jit.is_scripting():
            return _inference_only(images, self.training)
        else:
            if not self.training:
                return images
            return F.cutout(images, self.size, count=self.count, generator=self.generator)

    def extra_repr(self) -> str:
        return f"size={self.size}, count={self.count}"
