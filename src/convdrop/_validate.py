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


def check_float_tensor(x: object, name: str = "x") -> torch.Tensor:
    """Raise ``TypeError`` unless ``x`` is a floating-point tensor."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(
            f"{name} must be a floating-point tensor (float16, bfloat16, float32 or float64), "
            f"got dtype {x.dtype}"
        )
    return x


def check_rank(shape: Sequence[int], ranks: Sequence[int], name: str = "x") -> None:
    """Raise ``ValueError`` unless ``len(shape)`` is one of ``ranks``."""
    if len(shape) not in ranks:
        wanted = " or ".join(_rank_name(r) for r in ranks)
        raise ValueError(
            f"{name} must have {wanted} dimensions, got shape {tuple(shape)} "
            f"({len(shape)} dimensions)"
        )


def _rank_name(rank: int) -> str:
    names = {3: "3 (N, C, L)", 4: "4 (N, C, H, W)", 5: "5 (N, C, D, H, W)"}
    return names.get(rank, str(rank))


def check_block_size(block_size: int | Sequence[int], ndim: int) -> tuple[int, ...]:
    """Normalize ``block_size`` to a tuple of ``ndim`` positive ints."""
    if isinstance(block_size, bool):
        raise ValueError(f"block_size must be an int >= 1 or a tuple of them, got {block_size!r}")
    if isinstance(block_size, int):
        sizes: tuple[int, ...] = (block_size,) * ndim
    elif isinstance(block_size, Sequence) and not isinstance(block_size, str):
        sizes = tuple(block_size)
        if len(sizes) != ndim:
            raise ValueError(
                f"block_size must be an int or a tuple of {ndim} ints for a {ndim}d map, "
                f"got {block_size!r} (length {len(sizes)})"
            )
    else:
        raise ValueError(f"block_size must be an int >= 1 or a tuple of them, got {block_size!r}")
    for size in sizes:
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"block_size entries must be ints >= 1, got {block_size!r}")
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
