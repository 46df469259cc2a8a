"""Which DropBlock path a tensor takes, by device and backend (``_native.backend``).

- CPU tensors (backends auto, cpu-kernel, torch, triton): the seed-id sampler and the
  fused kernel where it applies (:class:`_autograd.DropBlockFunction`). Under
  ``torch.compile`` or ``torch.export`` the same code runs inside the registered op
  ``convdrop::drop_block_cpu``, seeded by one int64 drawn from the generator, so the
  masks there differ from eager ones drawn with the same generator state.
- CUDA tensors: the Triton kernel (``convdrop::drop_block_triton``) for 1d and 2d maps
  when it is available and the backend is auto or triton; otherwise the generic path.
- Any other device (and every device under ``torch-generic``): the generic sync-free
  path (``convdrop::drop_block_generic``), which also runs on ``meta`` tensors.

``inplace=True`` is honoured in place only on the eager CPU path; the registered ops
compute out of place and copy the result into ``x`` (same values, one temporary).

Recompiles: a compiled graph is specialized to the block, scale and flags and to
``training``, not to ``p``. The layers hand ``p`` to the ops as a 0-dim CPU tensor that the
op reads when it runs (a host read, never a device sync), so a scheduler's ramp changes the
rate of a compiled graph without recompiling. A plain float passed to the functional op
inside a compiled function is a constant of that graph unless the compiler makes it
symbolic (a float argument of the compiled function), in which case it becomes such a
tensor too.
"""

from __future__ import annotations

import torch

from convdrop.ops import device as generic
from convdrop.ops import native as _native
from convdrop.ops import registry as _ops
from convdrop.ops.autograd import DropBlockFunction
from convdrop.ops.gamma import drop_seed_rate
from convdrop.ops.sampling import Geometry, sample_seeds


def path_for(device: torch.device, ndim: int = 4) -> str:
    """"cpu" (sampler and kernel), "triton" or "generic" for ``ndim``-d tensors on
    ``device``. The Triton kernel handles 1d and 2d maps (ndim 3 and 4); 3d maps take the
    generic path on CUDA whatever the backend."""
    name = _native.backend()
    if name == "torch-generic":
        return "generic"
    if device.type == "cpu":
        _native.active()  # raises for cpu-kernel without a built kernel
        return "cpu"
    if device.type == "cuda" and name in ("auto", "triton") and ndim in (3, 4):
        if _ops.triton_available():
            return "triton"
        if name == "triton":
            raise RuntimeError("CONVDROP_BACKEND=triton but the Triton kernel is not available "
                               f"({_triton_state()})")
    return "generic"


def _triton_state() -> str:
    if _ops._triton is None:
        return "convdrop.ops.triton_kernel not importable"
    return "available" if _ops.triton_available() else "unavailable (no CUDA or no triton)"


def backend_status() -> str:
    """One line: the backend and what CPU and CUDA tensors run."""
    name = _native.backend()
    cpu = "generic path" if name == "torch-generic" else _native.status()
    if name in ("auto", "triton") and _ops.triton_available():
        cuda = "Triton kernel"
    else:
        cuda = "generic sync-free path"
        if name in ("auto", "triton"):
            cuda += f" (Triton: {_triton_state()})"
    return f"backend {name} (CPU: {cpu}; CUDA: {cuda})"


def _seed(generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """One int64 (1,) from the caller's generator, to seed an op's own randomness."""
    if generator is None:
        return torch.randint(0, 1 << 62, (1,), dtype=torch.int64, device=device)
    return torch.randint(0, 1 << 62, (1,), dtype=torch.int64, generator=generator,
                         device=device)


def compiling() -> bool:
    """Under torch.compile or torch.export (``is_exporting`` is new in torch 2.6)."""
    exporting = getattr(torch.compiler, "is_exporting", lambda: False)
    return torch.compiler.is_compiling() or exporting()


def drop_block(x: torch.Tensor, geometry: Geometry, p: float | torch.Tensor, calibrated: bool,
               scale: str, generator: torch.Generator | None, inplace: bool) -> torch.Tensor:
    """DropBlock of ``x`` (N, C, *spatial); arguments checked. ``p`` is a float, or a 0-dim
    float64 CPU tensor that the registered ops read when they run (see :func:`_rate`)."""
    path = path_for(x.device, x.dim())
    block = list(geometry.block)
    shared = geometry.shared_channels
    if path == "cpu" and not compiling() and not isinstance(p, torch.Tensor):
        gamma = drop_seed_rate(geometry.spatial, geometry.block, p, calibrated)
        with torch.no_grad():
            seeds = sample_seeds(geometry.trials, gamma, generator=generator, device=x.device)
        return DropBlockFunction.apply(x, seeds, geometry, scale, p, inplace)
    rate = _rate(p)
    if path == "generic":
        draws = generic.draw_bits(geometry, generator, x.device)
        out = _ops.drop_block_generic(x, draws, rate, block, shared, scale, calibrated)[0]
    else:
        op = _ops.drop_block_cpu if path == "cpu" else _ops.drop_block_triton
        out = op(x, _seed(generator, x.device), rate, block, shared, scale, calibrated)[0]
    return x.copy_(out) if inplace else out


def _rate(p: float | torch.Tensor) -> torch.Tensor:
    """``p`` as the ops take it: a 0-dim float64 CPU tensor (read on the host, no sync)."""
    if isinstance(p, torch.Tensor):
        return p.to(torch.float64)
    return torch.tensor(p, dtype=torch.float64)


def block_mask(shape: tuple[int, ...], geometry: Geometry, gamma: float,
               generator: torch.Generator | None, device: torch.device) -> torch.Tensor | None:
    """The mask on a sync-free path, bool ``shape``; None when the CPU sampler is to make it."""
    path = path_for(device, len(shape))
    if path == "cpu":
        return None
    if path == "triton":
        mask = _ops._triton.mask(shape, _seed(generator, device), gamma, geometry.block,
                                 geometry.shared_channels)
    else:
        mask = generic.paint(generic.draw_seed_map(geometry, gamma, generator, device),
                             geometry)
    return mask.expand(shape)
