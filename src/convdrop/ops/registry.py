"""DropBlock as registered ``torch.library`` ops, so compilers and exporters see one node.

Randomness is drawn *outside* the ops, from the caller's generator, and passed in as a
tensor, so the ops are pure functions of their inputs (``torch.compile`` and
``torch.export`` need that) and ``generator=`` stays reproducible.

``p`` is a 0-dim float64 CPU tensor, read on the host when the op runs (a CPU read, never
a device sync); the seed rate is solved there too (cached per map, block and ``p``). So a
compiled graph takes any new ``p`` (a scheduler's ramp) without recompiling; the fake
kernels never read it.

- ``convdrop::drop_block_generic(x, draws, p, block, shared_channels, scale, calibrated)``:
  the sync-free path (:mod:`convdrop.ops.device`); ``draws`` int32 (maps, *valid) are
  31-bit uniforms, a seed where below the rate. Its fake kernel runs the same tensor code
  on fake tensors. Returns (out, factor, bits); backward keeps bits (1 bit per valid
  position) + factor.
- ``convdrop::drop_block_cpu(x, seed, p, block, shared_channels, scale, calibrated)``: the
  CPU sampler path (fused kernel where it applies) under a compiler. ``seed`` (int64
  (1,)) seeds a private generator for ``_sampling.sample_seeds``; backward draws the
  same seed ids again, so 8 bytes + the factor are kept and no size depends on data.
- ``convdrop::drop_block_triton(x, seed, p, block, shared_channels, scale, calibrated)``
  and its ``_backward``: the fused Triton kernel (``convdrop.ops.triton_kernel``) on CUDA.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from convdrop.ops import autograd as _autograd
from convdrop.ops import device as generic
from convdrop.ops import validate as v
from convdrop.ops.gamma import drop_seed_rate
from convdrop.ops.sampling import Geometry, sample_seeds

try:
    from convdrop.ops import triton_kernel as _triton
except ImportError:  # triton missing (a CPU-only torch): CUDA takes the generic path
    _triton = None

Tensor = torch.Tensor


def _geometry(x: Tensor, block: Sequence[int], shared_channels: bool) -> Geometry:
    return Geometry.of(tuple(x.shape), tuple(block), shared_channels)


def _rate(p: Tensor, geometry: Geometry, calibrated: bool, scale: str | None = None,
          dtype: torch.dtype | None = None) -> tuple[float, float]:
    """(p, seed rate) read from the 0-dim CPU tensor ``p`` when an op runs; ``p`` is
    checked here because a traced caller could not check its value."""
    value = v.check_p(float(p))
    if scale == "expected" and dtype is not None:
        v.check_expected_scale(value, dtype)
    return value, drop_seed_rate(geometry.spatial, geometry.block, value, calibrated)


# --- generic ---------------------------------------------------------------------

def _generic_forward(x: Tensor, draws: Tensor, p: Tensor, block: Sequence[int],
                     shared_channels: bool, scale: str,
                     calibrated: bool) -> tuple[Tensor, Tensor, Tensor]:
    """x (N, C, *spatial), draws int32 (maps, *valid) -> (out, factor 0-dim float32,
    bit-packed seeds uint8 (ceil(maps * positions / 8),))."""
    geometry = _geometry(x, block, shared_channels)
    value, gamma = _rate(p, geometry, calibrated, scale, x.dtype)
    return generic.forward(x, generic.seeds_below(draws, gamma), geometry, scale, value)


def _generic_fake(x: Tensor, draws: Tensor, p: Tensor, block: Sequence[int],
                  shared_channels: bool, scale: str,
                  calibrated: bool) -> tuple[Tensor, Tensor, Tensor]:
    """The same tensor code on fake (or meta) tensors, with a stand-in rate: ``p`` has
    no value here, and nothing the code computes may depend on one."""
    geometry = _geometry(x, block, shared_channels)
    return generic.forward(x, generic.seeds_below(draws, 0.5), geometry, scale, 0.5)


drop_block_generic = torch.library.custom_op("convdrop::drop_block_generic", _generic_forward,
                                             mutates_args=())
drop_block_generic.register_fake(_generic_fake)


def _generic_context(ctx: Any, inputs: tuple[Any, ...], output: tuple[Tensor, ...]) -> None:
    x, _, _, block, shared_channels = inputs[:5]
    ctx.geometry = _geometry(x, block, shared_channels)
    ctx.save_for_backward(output[2], output[1])  # bits, factor


def _generic_backward(ctx: Any, grad: Tensor, *_: Any) -> tuple[Tensor | None, ...]:
    bits, factor = ctx.saved_tensors
    return (generic.backward(grad, bits, ctx.geometry, factor),
            None, None, None, None, None, None)


drop_block_generic.register_autograd(_generic_backward, setup_context=_generic_context)


# --- CPU sampler / fused kernel ----------------------------------------------------

def _seed_ids(seed: Tensor, geometry: Geometry, gamma: float) -> Tensor:
    """The sorted seed ids drawn by a generator seeded from ``seed`` (a CPU tensor)."""
    generator = torch.Generator().manual_seed(int(seed))
    return sample_seeds(geometry.trials, gamma, generator=generator)


@torch.library.custom_op("convdrop::drop_block_cpu", mutates_args=(), device_types="cpu")
def drop_block_cpu(x: Tensor, seed: Tensor, p: Tensor, block: Sequence[int],
                   shared_channels: bool, scale: str, calibrated: bool) -> tuple[Tensor, Tensor]:
    """x (N, C, *spatial), seed int64 (1,) -> (out like x, factor 0-dim float64)."""
    geometry = _geometry(x, block, shared_channels)
    value, gamma = _rate(p, geometry, calibrated, scale, x.dtype)
    out, factor = _autograd.apply_seeds(x, _seed_ids(seed, geometry, gamma), geometry, scale,
                                        value)
    return out, torch.tensor(factor, dtype=torch.float64)


@drop_block_cpu.register_fake
def _(x: Tensor, seed: Tensor, p: Tensor, block: Sequence[int], shared_channels: bool,
      scale: str, calibrated: bool) -> tuple[Tensor, Tensor]:
    return torch.empty_like(x), x.new_empty((), dtype=torch.float64)


@torch.library.custom_op("convdrop::drop_block_cpu_backward", mutates_args=(),
                         device_types="cpu")
def drop_block_cpu_backward(grad: Tensor, seed: Tensor, p: Tensor, block: Sequence[int],
                            shared_channels: bool, calibrated: bool, factor: Tensor) -> Tensor:
    """grad (N, C, *spatial) -> contiguous grad * factor with the same blocks zeroed."""
    geometry = _geometry(grad, block, shared_channels)
    gamma = _rate(p, geometry, calibrated)[1]
    return _autograd.grad_seeds(grad, _seed_ids(seed, geometry, gamma), geometry, float(factor))


@drop_block_cpu_backward.register_fake
def _(grad: Tensor, seed: Tensor, p: Tensor, block: Sequence[int], shared_channels: bool,
      calibrated: bool, factor: Tensor) -> Tensor:
    return torch.empty_like(grad, memory_format=torch.contiguous_format)


# --- Triton ----------------------------------------------------------------------

@torch.library.custom_op("convdrop::drop_block_triton", mutates_args=(), device_types="cuda")
def drop_block_triton(x: Tensor, seed: Tensor, p: Tensor, block: Sequence[int],
                      shared_channels: bool, scale: str,
                      calibrated: bool) -> tuple[Tensor, Tensor]:
    """x (N, C, *spatial) on CUDA, seed int64 (1,) -> (out like x, factor 0-dim float32)."""
    if _triton is None:
        raise RuntimeError("convdrop.ops.triton_kernel is not importable")
    value, gamma = _rate(p, _geometry(x, block, shared_channels), calibrated, scale, x.dtype)
    return _triton.forward(x, seed, gamma, tuple(block), shared_channels, scale, value)


@drop_block_triton.register_fake
def _(x: Tensor, seed: Tensor, p: Tensor, block: Sequence[int], shared_channels: bool,
      scale: str, calibrated: bool) -> tuple[Tensor, Tensor]:
    return torch.empty_like(x), x.new_empty((), dtype=torch.float32)


@torch.library.custom_op("convdrop::drop_block_triton_backward", mutates_args=(),
                         device_types="cuda")
def drop_block_triton_backward(grad: Tensor, seed: Tensor, p: Tensor, block: Sequence[int],
                               shared_channels: bool, calibrated: bool,
                               factor: Tensor) -> Tensor:
    """grad (N, C, *spatial) contiguous -> grad * factor with the forward's blocks zeroed."""
    if _triton is None:
        raise RuntimeError("convdrop.ops.triton_kernel is not importable")
    gamma = _rate(p, _geometry(grad, block, shared_channels), calibrated)[1]
    return _triton.backward(grad, seed, gamma, tuple(block), shared_channels, factor)


@drop_block_triton_backward.register_fake
def _(grad: Tensor, seed: Tensor, p: Tensor, block: Sequence[int], shared_channels: bool,
      calibrated: bool, factor: Tensor) -> Tensor:
    return torch.empty_like(grad)


def _seeded_context(ctx: Any, inputs: tuple[Any, ...], output: tuple[Tensor, ...]) -> None:
    _, seed, p, ctx.block, ctx.shared_channels, _, ctx.calibrated = inputs
    ctx.save_for_backward(seed, p, output[1])


def _cpu_backward(ctx: Any, grad: Tensor, *_: Any) -> tuple[Tensor | None, ...]:
    seed, p, factor = ctx.saved_tensors
    grad_in = drop_block_cpu_backward(grad, seed, p, ctx.block, ctx.shared_channels,
                                      ctx.calibrated, factor)
    return grad_in, None, None, None, None, None, None


def _triton_backward(ctx: Any, grad: Tensor, *_: Any) -> tuple[Tensor | None, ...]:
    seed, p, factor = ctx.saved_tensors
    grad_in = drop_block_triton_backward(grad.contiguous(), seed, p, ctx.block,
                                         ctx.shared_channels, ctx.calibrated, factor)
    return grad_in, None, None, None, None, None, None


drop_block_cpu.register_autograd(_cpu_backward, setup_context=_seeded_context)
drop_block_triton.register_autograd(_triton_backward, setup_context=_seeded_context)


def triton_available() -> bool:
    """Whether the Triton module imported and says it can run."""
    return _triton is not None and bool(_triton.available())
