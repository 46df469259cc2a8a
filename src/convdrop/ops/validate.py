"""Argument checks shared by the ops, layers and schedulers.

Every check raises at the boundary with a message that names the argument, the
value received and what was expected, so errors never surface deep inside torch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

SCALES = ("batch", "expected")


def check_p(p: float, name: str = "p") -> float:
    """Return ``p`` as a float in [0, 1] or raise ``ValueError``."""
    if isinstance(p, bool) or not isinstance(p, (int, float)):
        raise ValueError(f"{name} must be a number in [0, 1], got {p!r} ({type(p).__name__})")
    if math.isnan(p) or not 0.0 <= p <= 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1], got {p!r}")
    return float(p)


def check_rate_tensor(p: torch.Tensor, name: str = "p") -> torch.Tensor:
    """A ``p`` given as a tensor: 0-dim, floating point, on the CPU (it is read on the
    host, so reading it never waits for an accelerator). Only metadata is checked here,
    so this works on the fake tensors of a compiler; the value is checked where read."""
    if p.dim() != 0 or not p.is_floating_point() or p.device.type != "cpu":
        raise ValueError(f"{name} as a tensor must be a 0-dim floating-point CPU tensor, got "
                         f"{p.dtype} of shape {tuple(p.shape)} on {p.device}")
    return p


FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def check_float_tensor(x: object, name: str = "x") -> torch.Tensor:
    """Raise ``TypeError`` unless ``x`` is a float16/bfloat16/float32/float64 tensor.

    float8 types are floating point too, but torch has no arithmetic for them.
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dtype not in FLOAT_DTYPES:
        raise TypeError(
            f"{name} must be a floating-point tensor (float16, bfloat16, float32 or float64), "
            f"got dtype {x.dtype}"
        )
    return x


def check_rank(shape: Sequence[int], ranks: Sequence[int], name: str = "x",
               layouts: Sequence[str] | None = None) -> None:
    """Raise ``ValueError`` unless ``len(shape)`` is one of ``ranks``.

    ``layouts`` names the accepted layouts, e.g. ``("(C, H, W)", "(N, C, H, W)")``; by
    default they are the DropBlock ones, (N, C, L), (N, C, H, W) and (N, C, D, H, W).
    """
    if len(shape) not in ranks:
        names = layouts or [_rank_name(r) for r in ranks]
        wanted = " or ".join(names)
        raise ValueError(
            f"{name} must have {wanted} dimensions, got shape {tuple(shape)} "
            f"({len(shape)} dimensions)"
        )


def check_shape(shape: object, ranks: Sequence[int], name: str = "shape") -> tuple[int, ...]:
    """Return ``shape`` as a tuple of ints >= 0 with one of ``ranks`` dimensions."""
    if isinstance(shape, (str, bytes)) or not isinstance(shape, (Sequence, torch.Size)):
        raise ValueError(f"{name} must be a sequence of ints, got {shape!r}")
    for size in shape:
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise ValueError(f"{name} entries must be ints >= 0, got {tuple(shape)!r}")
    check_rank(tuple(shape), ranks, name=name)
    return tuple(shape)


def _rank_name(rank: int) -> str:
    names = {3: "3 (N, C, L)", 4: "4 (N, C, H, W)", 5: "5 (N, C, D, H, W)"}
    return names.get(rank, str(rank))


def check_block_size(block_size: int | Sequence[int], ndim: int,
                     name: str = "block_size") -> tuple[int, ...]:
    """Normalize ``block_size`` (called ``name`` in messages) to ``ndim`` positive ints."""
    if isinstance(block_size, bool):
        raise ValueError(f"{name} must be an int >= 1 or a tuple of them, got {block_size!r}")
    if isinstance(block_size, int):
        sizes: tuple[int, ...] = (block_size,) * ndim
    elif isinstance(block_size, Sequence) and not isinstance(block_size, str):
        sizes = tuple(block_size)
        if len(sizes) != ndim:
            raise ValueError(
                f"{name} must be an int or a tuple of {ndim} ints for a {ndim}d map, "
                f"got {block_size!r} (length {len(sizes)})"
            )
    else:
        raise ValueError(f"{name} must be an int >= 1 or a tuple of them, got {block_size!r}")
    for size in sizes:
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"{name} entries must be ints >= 1, got {block_size!r}")
    return sizes


def check_scale(scale: str) -> str:
    """Raise ``ValueError`` unless ``scale`` is a known normalization."""
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {SCALES}, got {scale!r}")
    return scale


def check_generator(generator: object, device: torch.device | None = None) -> None:
    """Raise unless ``generator`` is None or a ``torch.Generator`` on ``device``'s type."""
    if generator is None:
        return
    if not isinstance(generator, torch.Generator):
        raise TypeError(
            f"generator must be a torch.Generator or None, got {type(generator).__name__}"
        )
    if device is not None and generator.device.type != device.type:
        raise ValueError(
            f"generator is on {generator.device.type} but the tensor is on {device.type}; "
            f"expected a generator created with torch.Generator(device='{device.type}')"
        )


def check_inplace(x: torch.Tensor, inplace: bool) -> None:
    """Refuse ``inplace=True`` where autograd would refuse it, before anything is written.

    Writing into a leaf that requires grad (an ``nn.Parameter``, say), or into a view of
    one, would destroy the value autograd needs; torch raises only after the write.
    """
    if not (inplace and torch.is_grad_enabled() and x.requires_grad):
        return
    base = x._base if x._is_view() else None
    if x.is_leaf or (base is not None and base.is_leaf and base.requires_grad):
        what = "a leaf tensor" if x.is_leaf else "a view of a leaf tensor"
        raise RuntimeError(
            f"inplace=True cannot write into {what} that requires grad (shape "
            f"{tuple(x.shape)}); use inplace=False, or detach it or run under torch.no_grad()"
        )


def check_expected_scale(p: float, dtype: torch.dtype) -> None:
    """Refuse ``scale="expected"`` when 1 / (1 - p) overflows ``dtype`` (float16 above
    p ≈ 0.99998): the kept units would all become inf."""
    if p >= 1.0:
        return
    largest = torch.finfo(dtype).max
    if 1.0 / (1.0 - p) > largest:
        raise ValueError(
            f"p={p!r} with scale='expected' needs a factor 1 / (1 - p) = {1.0 / (1.0 - p):.4g}, "
            f"more than {dtype} can hold ({largest:.6g}); use p <= {1.0 - 1.0 / largest:.6g}, "
            f"scale='batch', or a wider dtype"
        )


def check_positive_int(value: object, name: str) -> int:
    """Return ``value`` if it is an int >= 1, else raise ``ValueError``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    return value


def check_int(value: object, name: str, low: int, high: int | None = None, *,
              expected: str | None = None) -> int:
    """Return ``value`` if it is an int in ``[low, high)`` (no upper bound for None).

    Otherwise raise ``ValueError`` naming ``name``, the value and ``expected`` (by
    default "an int >= low" or "an int in [low, high)"). Bools are not ints here.
    """
    if (isinstance(value, bool) or not isinstance(value, int) or value < low
            or (high is not None and value >= high)):
        wanted = expected or (f"an int >= {low}" if high is None else f"an int in [{low}, {high})")
        raise ValueError(f"{name} must be {wanted}, got {value!r}")
    return value


def check_nonnegative_int(value: object, name: str) -> int:
    """Return ``value`` if it is an int >= 0, else raise ``ValueError``."""
    return check_int(value, name, 0)


def is_number(value: object) -> bool:
    """True for an int or float that is not a bool."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_number(value: object, name: str, low: float, high: float, *,
                 include_low: bool = True, include_high: bool = True,
                 expected: str | None = None) -> float:
    """Return ``value`` as a float if it is a number between ``low`` and ``high``.

    The ends count when ``include_low`` / ``include_high``; NaN is never in range.
    Otherwise raise ``ValueError`` naming ``name``, the value and ``expected`` (by
    default "a number in [low, high]" with the brackets the ends call for).
    """
    above = is_number(value) and (low <= value if include_low else low < value)
    if not (above and (value <= high if include_high else value < high)):
        interval = f"{'[' if include_low else '('}{low:g}, {high:g}{']' if include_high else ')'}"
        raise ValueError(f"{name} must be {expected or 'a number in ' + interval}, got {value!r}")
    return float(value)
