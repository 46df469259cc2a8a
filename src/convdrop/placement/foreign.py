"""Every regularizer convdrop can see, its own or a library's: what it is and what it drops.

``sites``, ``drop_budget`` and :class:`DropRateScheduler` read models through this table,
so timm's ``DropBlock2d`` and ``DropPath``, torchvision's ``StochasticDepth`` and
``DropBlock2d/3d`` and torch's dropout layers count like convdrop's own layers. Classes
are recognized by module and name along the MRO, never imported: the core needs torch
and numpy only.

Expected drop per library, for a (N, C, *spatial) input:

- dropout, spatial dropout, DropPath, stochastic depth and calibrated DropBlock: ``p``.
- torchvision ``DropBlock2d``: the paper's seed rate, seeds in the valid region only.
- timm ``DropBlock2d``: the paper's seed rate times ``gamma_scale``, but seeds may fall
  anywhere on the map, so small maps drop far more than ``drop_prob`` (0.93 on a 7x7 map
  with block 7 at ``drop_prob=0.1``). The budget shows that real fraction.
- the ``dropblock`` package's ``DropBlock2D``/``DropBlock3D``: seed rate
  ``drop_prob / block_size**d`` anywhere on the map, blocks never clipped, one mask per
  sample, so it drops less than ``drop_prob`` (0.055 on a 7x7 map with block 7 at 0.1).
"""

from __future__ import annotations

import functools
import math
import weakref
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from torch import nn

from convdrop import layers as L
from convdrop.ops import validate as v
from convdrop.ops.gamma import clip_block, expected_drop_fraction, paper_gamma

__all__ = [
    "Regularization", "claim", "describe", "expected_fraction", "get_rate", "owner",
    "recorded_target", "set_rate", "target_rate", "unclaim",
]

DROPBLOCKS = (L.DropBlock1d, L.DropBlock2d, L.DropBlock3d)


@dataclass(frozen=True)
class Regularization:
    """What a regularizer module is, for convdrop.

    Attributes:
        kind: "dropblock", "spatial_dropout", "dropout", "drop_path" or "stochastic_depth".
        source: "convdrop", "torch", "timm", "torchvision" or "dropblock" (the package).
        rate: the attribute that holds its drop probability ("p" or "drop_prob").
    """

    kind: str
    source: str
    rate: str


# (module prefix, class name) -> (kind, rate attribute), matched along the MRO.
_LIBRARIES: dict[tuple[str, str], tuple[str, str]] = {
    ("timm.", "DropBlock2d"): ("dropblock", "drop_prob"),
    ("timm.", "DropPath"): ("drop_path", "drop_prob"),
    ("torchvision.", "StochasticDepth"): ("stochastic_depth", "p"),
    ("torchvision.", "DropBlock2d"): ("dropblock", "p"),
    ("torchvision.", "DropBlock3d"): ("dropblock", "p"),
    ("dropblock.", "DropBlock2D"): ("dropblock", "drop_prob"),
    ("dropblock.", "DropBlock3D"): ("dropblock", "drop_prob"),
}
_CHANNEL_DROPOUTS = (nn.Dropout1d, nn.Dropout2d, nn.Dropout3d)


def _convdrop_kind(cls: type) -> str:
    if issubclass(cls, DROPBLOCKS):
        return "dropblock"
    if issubclass(cls, L.SpatialDropout):
        return "spatial_dropout"
    if issubclass(cls, L.DropPath):
        return "drop_path"
    return "dropout" if issubclass(cls, L.Dropout) else cls.__name__.lower()


@functools.cache
def _describe_class(cls: type) -> Regularization | None:
    if issubclass(cls, L.Regularizer):
        return Regularization(_convdrop_kind(cls), "convdrop", "p")
    if issubclass(cls, nn.modules.dropout._DropoutNd):
        kind = "spatial_dropout" if issubclass(cls, _CHANNEL_DROPOUTS) else "dropout"
        return Regularization(kind, "torch", "p")
    for base in cls.__mro__:
        for (prefix, name), (kind, rate) in _LIBRARIES.items():
            if base.__name__ == name and base.__module__.startswith(prefix):
                return Regularization(kind, prefix.rstrip("."), rate)
    return None


def describe(module: nn.Module) -> Regularization | None:
    """The :class:`Regularization` of ``module``, or None if it is not a known regularizer."""
    return _describe_class(type(module))


def get_rate(module: nn.Module) -> float | None:
    """The module's drop probability now, or None if it has no numeric rate."""
    info = describe(module)
    value = getattr(module, info.rate, None) if info else None
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) \
        else None


def set_rate(module: nn.Module, p: float) -> None:
    """Set the module's drop probability (``p`` or timm's ``drop_prob``)."""
    info = describe(module)
    if info is None:
        raise ValueError(f"module must be a known regularizer, got {type(module).__name__}")
    setattr(module, info.rate, v.check_p(p))


def _cover(side: int, block: int) -> np.ndarray:
    """Per position: how many seed positions' blocks cover it, seeds anywhere on the side
    (a max-pool with padding ``block // 2``, cropped by one for even blocks, as timm and
    the ``dropblock`` package draw)."""
    u = np.arange(side)
    low = u - (block - 1) // 2
    return np.minimum(low + block - 1, side - 1) - np.maximum(low, 0) + 1


def _seeds_anywhere(spatial: Sequence[int], blocks: Sequence[int], gamma: float) -> float:
    """Expected dropped fraction of a map when each position seeds a block with
    probability ``gamma``, anywhere on the map: a unit survives only if no seed covers it."""
    if gamma >= 1.0:
        return 1.0
    cover = functools.reduce(np.multiply.outer, [_cover(side, k)
                                                for side, k in zip(spatial, blocks)])
    return float(1.0 - np.exp(cover * math.log1p(-gamma)).mean())


def _timm_dropblock(module: nn.Module, spatial: tuple[int, ...], p: float) -> float:
    if len(spatial) != 2:
        return p
    (h, w), k = spatial, int(module.block_size)
    kh, kw = min(k, h), min(k, w)
    gamma = float(getattr(module, "gamma_scale", 1.0)) * p * h * w / (kh * kw) \
        / ((h - kh + 1) * (w - kw + 1))
    return _seeds_anywhere(spatial, (kh, kw), gamma)


def _package_dropblock(module: nn.Module, spatial: tuple[int, ...], p: float) -> float:
    """The ``dropblock`` package: seeds at ``p / k**d`` anywhere, blocks never clipped."""
    k = int(module.block_size)
    return _seeds_anywhere(spatial, (k,) * len(spatial), p / k ** len(spatial))


def expected_fraction(module: nn.Module, shape: Sequence[int]) -> float:
    """Expected fraction of a (N, C, *spatial) input of ``shape`` that ``module`` drops.

    ``p`` for dropout, spatial dropout, DropPath, stochastic depth and calibrated
    DropBlock; the exact fraction of the paper's seed rate for ``calibrated=False`` and
    torchvision's DropBlock; timm's and the ``dropblock`` package's with their seeds
    anywhere on the map.
    """
    info = describe(module)
    p = get_rate(module) or 0.0
    if info is None or info.kind != "dropblock" or p in (0.0, 1.0):
        return p
    spatial = tuple(shape[2:])
    if info.source == "timm":
        return _timm_dropblock(module, spatial, p)
    if info.source == "dropblock":
        return _package_dropblock(module, spatial, p)
    if info.source == "convdrop" and module.calibrated:
        return p
    size = module.block_size
    block = clip_block(spatial, v.check_block_size(size, len(spatial)))
    return expected_drop_fraction(spatial, block, paper_gamma(spatial, block, p))


# --- who ramps a regularizer ---------------------------------------------------------
# A DropRateScheduler records each module's target on the module itself (a plain float
# attribute: it survives deepcopy, pickling and the scheduler), and itself in a weak
# table, so a second scheduler or a re-``regularize`` can tell a ramped-down ``p`` from
# a target.

_TARGET = "_convdrop_target"
_OWNERS: weakref.WeakKeyDictionary[nn.Module, weakref.ref] = weakref.WeakKeyDictionary()


def recorded_target(module: nn.Module) -> float | None:
    """The unscaled target a scheduler recorded for ``module``, or None."""
    value = module.__dict__.get(_TARGET)
    return float(value) if value is not None else None


def target_rate(module: nn.Module) -> float | None:
    """The rate ``module`` is meant to have: a recorded target, else its ``p`` now."""
    recorded = recorded_target(module)
    return recorded if recorded is not None else get_rate(module)


def owner(module: nn.Module) -> object | None:
    """The live scheduler that drives ``module``, or None."""
    ref = _OWNERS.get(module)
    return ref() if ref is not None else None


def claim(module: nn.Module, scheduler: object, target: float) -> None:
    """Record that ``scheduler`` drives ``module`` towards the unscaled ``target``."""
    module.__dict__[_TARGET] = float(target)
    _OWNERS[module] = weakref.ref(scheduler)


def unclaim(module: nn.Module) -> None:
    """Forget the scheduler and target of ``module`` (its ``p`` is left as it is)."""
    module.__dict__.pop(_TARGET, None)
    _OWNERS.pop(module, None)

