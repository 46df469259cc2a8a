"""The fused CPU kernel (``_kernel.c``): when it applies, and how to call it.

The kernel writes ``x * scale`` map by map and zeroes each map's blocks while the
map is still in cache, so DropBlock streams the tensor once, as ``x * scalar``
does. The PyTorch-level path (a multiply, then zeroing by index) gives the same
bits and serves the CPU tensors the kernel does not: float16/bfloat16, other memory
layouts, and installs where the C file could not be compiled.

Which path runs is the *backend*, ``CONVDROP_BACKEND`` in the environment (read once) or
:func:`forced` for a block of code:

- ``auto`` (default): the kernel for CPU tensors it handles, the PyTorch-level sampler
  path for other CPU tensors, Triton on CUDA when it is available, else the generic
  sync-free path (:mod:`convdrop.ops.device`) on any other device;
- ``cpu-kernel``: as auto, but the kernel must be built (an error otherwise), and CUDA
  takes the generic path;
- ``torch``: PyTorch-level paths only: the sampler path on the CPU (the same bits as the
  kernel), the generic path elsewhere;
- ``torch-generic``: the generic sync-free path on every device, the CPU included (its
  statistics are tested on CPU tensors this way);
- ``triton``: as auto, but CUDA tensors must get the Triton kernel (an error otherwise).

The older ``CONVDROP_NATIVE=0`` (or false/off/no) still works when ``CONVDROP_BACKEND`` is
unset: it means ``torch``. :func:`disabled` runs a block on the PyTorch path (the bench
uses it to time both paths).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager

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
    """``CONVDROP_BACKEND`` or ``CONVDROP_NATIVE`` holds a value that is not one of theirs."""


def _from_environment(value: str) -> bool:
    """``CONVDROP_NATIVE``: 1/true/on/yes (the default) or 0/false/off/no."""
    key = value.strip().lower()
    if key not in _SWITCH:
        raise NativeSettingError("CONVDROP_NATIVE must be one of 1, true, on, yes, 0, false, "
                                 f"off, no; got {value!r}")
    return _SWITCH[key]


BACKENDS = ("auto", "cpu-kernel", "torch", "torch-generic", "triton")
_KERNEL_BACKENDS = ("auto", "cpu-kernel", "triton")  # those that run the kernel on the CPU


def _backend_from_environment(value: str) -> str:
    """``CONVDROP_BACKEND``: one of :data:`BACKENDS`, case and spaces ignored."""
    key = value.strip().lower()
    if key not in BACKENDS:
        raise NativeSettingError(f"CONVDROP_BACKEND must be one of {', '.join(BACKENDS)}; "
                                 f"got {value!r}")
    return key


def backend_from(environ: Mapping[str, str]) -> str:
    """The backend ``environ`` asks for: ``CONVDROP_BACKEND``, else ``torch`` when
    ``CONVDROP_NATIVE`` is off, else ``auto``. Raises :class:`NativeSettingError`."""
    value = environ.get("CONVDROP_BACKEND")
    if value is not None:
        return _backend_from_environment(value)
    return "auto" if _from_environment(environ.get("CONVDROP_NATIVE", "1")) else "torch"


def _from_variables() -> tuple[str, str]:
    """(backend, "") from the environment, or ("", the error) for a bad value."""
    try:
        return backend_from(os.environ), ""
    except NativeSettingError as err:
        return "", str(err)


# Read at import so a compiled graph guards on a constant; a bad value raises on first use.
_backend, _BAD_VALUE = _from_variables()


def backend() -> str:
    """The backend in force: :func:`forced`'s, else the one the environment asked for at
    import (see :func:`backend_from`)."""
    if not _backend:
        raise NativeSettingError(_BAD_VALUE)
    return _backend


def _is_enabled() -> bool:
    return backend() in _KERNEL_BACKENDS


def status() -> str:
    """One line for reports: whether the fused kernel runs, and if not, why."""
    if _kernel is None:
        return f"fused CPU kernel {_MISSING}"
    return "fused CPU kernel on" if _is_enabled() else "fused CPU kernel off (disabled)"


def active() -> bool:
    """True when the kernel is built and not turned off."""
    if backend() == "cpu-kernel" and _kernel is None:
        raise RuntimeError(f"CONVDROP_BACKEND=cpu-kernel but the fused CPU kernel is {_MISSING}")
    return _kernel is not None and _is_enabled()


@contextmanager
def forced(name: str) -> Iterator[None]:
    """Run the enclosed code with backend ``name`` (one of :data:`BACKENDS`)."""
    global _backend
    if name not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}; got {name!r}")
    before, _backend = backend(), name
    try:
        yield
    finally:
        _backend = before


def disabled() -> AbstractContextManager[None]:
    """Run the enclosed code on the PyTorch-level path (backend ``torch``)."""
    return forced("torch")


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
    per_key = _kernel.count(seeds.data_ptr(), seeds.numel(), geometry.maps, side, block,
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
        source.data_ptr(), source.numel(), out.data_ptr(), out.numel(), _DTYPES[source.dtype],
        n * c, c, int(geometry.shared_channels), side, block, seeds.data_ptr(), seeds.numel(),
        scale, threads,
    )
    return out
