"""The fused CPU kernel (``_kernel.c``): when it applies, and how to call it.

The kernel writes ``x * scale`` map by map and zeroes each map's blocks while the
map is still in cache, so DropBlock streams the tensor once, as ``x * scalar``
does. The PyTorch-level path (a multiply, then zeroing by index) gives the same
bits and serves everything the kernel does not: CUDA, float16/bfloat16, other
memory layouts, and installs where the C file could not be compiled.

``CONVDROP_NATIVE=0`` (or false/off/no) in the environment turns the kernel off for a
whole run;
:func:`disabled` does so for a block of code (the bench uses it to time both paths).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch

from convdrop.ops.sampling import Geometry

try:
    from convdrop.ops import _kernel
except ImportError as err:  # not compiled (no C compiler at install time)
    _kernel = None
    _MISSING = f"not built ({type(err).__name__}: {err})"
else:
    _MISSING = ""

_DTYPES = {torch.float32: 0, torch.float64: 1}
_SINGLE_THREAD_BELOW = 1 << 16  # units; starting a thread costs more than it saves
_SWITCH = {"1": True, "true": True, "on": True, "yes": True,
           "0": False, "false": False, "off": False, "no": False}


class NativeSettingError(ValueError):
    """``CONVDROP_NATIVE`` holds a value that is neither on nor off."""


def _from_environment(value: str) -> bool:
    """``CONVDROP_NATIVE``: 1/true/on/yes (the default) or 0/false/off/no."""
    key = value.strip().lower()
    if key not in _SWITCH:
        raise NativeSettingError("CONVDROP_NATIVE must be one of 1, true, on, yes, 0, false, "
                                 f"off, no; got {value!r}")
    return _SWITCH[key]


_enabled: bool | None = None  # read from CONVDROP_NATIVE on first use


def _is_enabled() -> bool:
    global _enabled
    if _enabled is None:
        _enabled = _from_environment(os.environ.get("CONVDROP_NATIVE", "1"))
    return _enabled


def status() -> str:
    """One line for reports: whether the fused kernel runs, and if not, why."""
    if _kernel is None:
        return f"fused CPU kernel {_MISSING}"
    return "fused CPU kernel on" if _is_enabled() else "fused CPU kernel off (disabled)"


def active() -> bool:
    """True when the kernel is built and not turned off."""
    return _kernel is not None and _is_enabled()


@contextmanager
def disabled() -> Iterator[None]:
    """Run the enclosed code on the PyTorch-level path."""
    global _enabled
    before, _enabled = _is_enabled(), False
    try:
        yield
    finally:
        _enabled = before


def handles(t: torch.Tensor) -> bool:
    """Whether the kernel can read or write ``t``: contiguous float32/float64 on the CPU."""
    return active() and t.device.type == "cpu" and t.dtype in _DTYPES and t.is_contiguous()


def counts(seeds: torch.Tensor) -> bool:
    """Whether :func:`count` can read ``seeds`` (int64 on the CPU)."""
    return active() and seeds.device.type == "cpu" and seeds.dtype == torch.int64


def _padded(geometry: Geometry) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Map and block sides as 3d (D, H, W): 1d and 2d maps get leading sides of 1."""
    pad = (1,) * (3 - len(geometry.spatial))
    return pad + geometry.spatial, pad + geometry.block


def count(seeds: torch.Tensor, geometry: Geometry) -> int:
    """Distinct dropped units of the whole tensor (see ``_sampling.count_dropped``)."""
    seeds = seeds.contiguous()
    side, block = _padded(geometry)
    per_key = _kernel.count(seeds.data_ptr(), seeds.numel(), side, block,
                            torch.get_num_threads())
    return per_key * (geometry.shape[1] if geometry.shared_channels else 1)


def apply(source: torch.Tensor, out: torch.Tensor, seeds: torch.Tensor, geometry: Geometry,
          scale: float) -> torch.Tensor:
    """out = source * scale with the seeds' blocks zeroed; ``out`` may be ``source``.

    Both tensors (N, C, *spatial) must pass :func:`handles` and share a dtype.
    """
    seeds = seeds.contiguous()
    side, block = _padded(geometry)
    n, c = geometry.shape[:2]
    threads = 1 if source.numel() < _SINGLE_THREAD_BELOW else torch.get_num_threads()
    _kernel.apply(
        source.data_ptr(), out.data_ptr(), _DTYPES[source.dtype], n * c, c,
        int(geometry.shared_channels), side, block, seeds.data_ptr(), seeds.numel(),
        scale, threads,
    )
    return out
