"""DropBlock as registered ``torch.library`` ops, so compilers and exporters see one node.

Randomness is drawn *outside* the ops, from the caller's generator, and passed in as a
tensor, so the ops are pure functions of their inputs (``torch.compile`` and
``torch.export`` need that) and ``generator=`` stays reproducible:

- ``convdrop::drop_block_generic(x, seeds, block, shared_channels, scale, p)``: the
  sync-free path (:mod:`convdrop.ops.device`), seeds a bool (maps, *valid) map. Its
  fake kernel is its real kernel: pure tensor ops run as well on fake tensors.
  Returns (out, factor, bits); backward keeps bits (1 bit per valid position) + factor.
- ``convdrop::drop_block_cpu(x, seed, gamma, block, shared_channels, scale, p)``: the
  CPU sampler path (fused kernel where it applies) under a compiler. ``seed`` (int64
  (1,)) seeds a private generator for ``_sampling.sample_seeds``; backward draws the
  same seed ids again, so 8 bytes + the factor are kept and no size depends on data.
- ``convdrop::drop_block_triton(x, seed, gamma, block, shared_channels, scale, p)`` and
  its ``_backward``: the fused Triton kernel (``convdrop.ops.triton_kernel``) on CUDA.

``p``, ``gamma`` and the rest are plain arguments: a compiled graph is specialized to
them (a new ``p`` recompiles; see :mod:`convdrop.ops.dispatch`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from convdrop.ops import autograd as _autograd
from convdrop.ops import device as generic
from convdrop.ops.sampling import Geometry, sample_seeds

try:
    from convdrop.ops import triton_kernel as _triton
except ImportError:  # triton missing (a CPU-only torch): CUDA takes the generic path
    _triton = None

Tensor = torch.Tensor


def _geometry(x: Tensor, block: Sequence[int], shared_channels: bool) -> Geometry:
    return Geometry.of(tuple(x.shape), tuple(block), shared_channels)


# --- generic ---------------------------------------------------------------------

def _generic_forward(x: Tensor, seeds: Tensor, block: Sequence[int], shared_channels: bool,
                       scale: str, p: float) -> tuple[Tensor, Tensor, Tensor]:
    """x (N, C, *spatial), seeds bool (maps, *valid) -> (out, factor 0-dim float32,
    bit-packed seeds uint8 (ceil(maps * positions / 8),))."""
    return generic.forward(x, seeds, _geometry(x, block, shared_channels), scale, p)


drop_block_generic = torch.library.custom_op("convdrop::drop_block_generic", _generic_forward,
                                             mutates_args=())
drop_block_generic.register_fake(_generic_forward)  # the same sync-free code


def _generic_context(ctx: Any, inputs: tuple[Any, ...], output: tuple[Tensor, ...]) -> None:
    x, _, block, shared_channels = inputs[:4]
    ctx.geometry = _geometry(x, block, shared_channels)
    ctx.save_for_backward(output[2], output[1])  # bits, factor


def _generic_backward(ctx: Any, grad: Tensor, *_: Any) -> tuple[Tensor | None, ...]:
    bits, factor = ctx.saved_tensors
    return generic.backward(grad, bits, ctx.geometry, factor), None, None, None, None, None


drop_block_generic.register_autograd(_generic_backward, setup_context=_generic_context)


# --- CPU sampler / fused kernel ----------------------------------------------------

def _seed_ids(seed: Tensor, geometry: Geometry, gamma: float) -> Tensor:
    """The sorted seed ids drawn by a generator seeded from ``seed`` (a CPU tensor)."""
    generator = torch.Generator().manual_seed(int(seed))
    return sample_seeds(geometry.trials, gamma, generator=generator)


@torch.library.custom_op("convdrop::drop_block_cpu", mutates_args=(), device_types="cpu")
def drop_block_cpu(x: Tensor, seed: Tensor, gamma: float, block: Sequence[int],
                   shared_channels: bool, scale: str, p: float) -> tuple[Tensor, Tensor]:
    """x (N, C, *spatial), seed int64 (1,) -> (out like x, factor 0-dim float64)."""
    geometry = _geometry(x, block, shared_channels)
    out, factor = _autograd.apply_seeds(x, _seed_ids(seed, geometry, gamma), geometry, scale, p)
    return out, torch.tensor(factor, dtype=torch.float64)


@drop_block_cpu.register_fake
def _(x: Tensor, seed: Tensor, gamma: float, block: Sequence[int], shared_channels: bool,
      scale: str, p: float) -> tuple[Tensor, Tensor]:
    return torch.empty_like(x), x.new_empty((), dtype=torch.float64)


@torch.library.custom_op("convdrop::drop_block_cpu_backward", mutates_args=(),
                         device_types="cpu")
def drop_block_cpu_backward(grad: Tensor, seed: Tensor, gamma: float, block: Sequence[int],
                            shared_channels: bool, factor: Tensor) -> Tensor:
    """grad (N, C, *spatial) -> contiguous grad * factor with the same blocks zeroed."""
    geometry = _geometry(grad, block, shared_channels)
    return _autograd.grad_seeds(grad, _seed_ids(seed, geometry, gamma), geometry, float(factor))


@drop_block_cpu_backward.register_fake
def _(grad: Tensor, seed: Tensor, gamma: float, block: Sequence[int], shared_channels: bool,
      factor: Tensor) -> Tensor:
    return torch.empty_like(grad, memory_format=torch.contiguous_format)


# --- Triton ----------------------------------------------------------------------

@torch.library.custom_op("convdrop::drop_block_triton", mutates_args=(), device_types="cuda")
def drop_block_triton(x: Tensor, seed: Tensor, gamma: float, block: Sequence[int],
                      shared_channels: bool, scale: str, p: float) -> tuple[Tensor, Tensor]:
    """x (N, C, *spatial) on CUDA, seed int64 (1,) -> (out like x, factor 0-dim float32)."""
    if _triton is None:
        raise RuntimeError("convdrop.ops.triton_kernel is not importable")
    return _triton.forward(x, seed, gamma, tuple(block), shared_channels, scale, p)


@drop_block_triton.register_fake
def _(x: Tensor, seed: Tensor, gamma: float, block: Sequence[int], shared_channels: bool,
      scale: str, p: float) -> tuple[Tensor, Tensor]:
    return torch.empty_like(x), x.new_empty((), dtype=torch.float32)


@torch.library.custom_op("convdrop::drop_block_triton_backward", mutates_args=(),
                         device_types="cuda")
def drop_block_triton_backward(grad: Tensor, seed: Tensor, gamma: float, block: Sequence[int],
                               shared_channels: bool, factor: Tensor) -> Tensor:
    """grad (N, C, *spatial) contiguous -> grad * factor with the forward's blocks zeroed."""
    if _triton is None:
        raise RuntimeError("convdrop.ops.triton_kernel is not importable")
    return _triton.backward(grad, seed, gamma, tuple(block), shared_channels, factor)


@drop_block_triton_backward.register_fake
def _(grad: Tensor, seed: Tensor, gamma: float, block: Sequence[int], shared_channels: bool,
      factor: Tensor) -> Tensor:
    return torch.empty_like(grad)


def _seeded_context(ctx: Any, inputs: tuple[Any, ...], output: tuple[Tensor, ...]) -> None:
    _, seed, ctx.gamma, ctx.block, ctx.shared_channels = inputs[:5]
    ctx.save_for_backward(seed, output[1])


def _cpu_backward(ctx: Any, grad: Tensor, *_: Any) -> tuple[Tensor | None, ...]:
    seed, factor = ctx.saved_tensors
    grad_in = drop_block_cpu_backward(grad, seed, ctx.gamma, ctx.block, ctx.shared_channels,
                                      factor)
    return grad_in, None, None, None, None, None, None


def _triton_backward(ctx: Any, grad: Tensor, *_: Any) -> tuple[Tensor | None, ...]:
    seed, factor = ctx.saved_tensors
    grad_in = drop_block_triton_backward(grad.contiguous(), seed, ctx.gamma, ctx.block,
                                         ctx.shared_channels, factor)
    return grad_in, None, None, None, None, None, None


drop_block_cpu.register_autograd(_cpu_backward, setup_context=_seeded_context)
drop_block_triton.register_autograd(_triton_backward, setup_context=_seeded_context)


def triton_available() -> bool:
    """Whether the Triton module imported and says it can run."""
    return _triton is not None and bool(_triton.available())
