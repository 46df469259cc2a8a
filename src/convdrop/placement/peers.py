"""The other libraries' DropBlock layers, recognized by name, and convdrop's layer for each.

Three peers ship a DropBlock a model may already hold: torchvision
(``torchvision.ops.DropBlock2d``/``DropBlock3d``), timm (``timm.layers.DropBlock2d``) and
the ``dropblock`` package (``DropBlock2D``/``DropBlock3D``, and ``LinearScheduler``, a
wrapper that ramps the wrapped layer's ``drop_prob`` each time its ``step()`` is called).
Classes are matched by module and name along the MRO, never imported: the core needs
torch and numpy only, and a peer that is not installed cannot be in a model anyway.

What each peer's arguments mean for convdrop's layer (:class:`Recipe`):

- torchvision: ``p`` and ``block_size`` as they are; masks per sample and channel, as
  convdrop's default. Its real drop is the paper's seed rate (``calibrated=False``).
- timm: :func:`convdrop.timm_drop_block`'s mapping: rate ``drop_prob * gamma_scale``,
  ``couple_channels`` becomes ``shared_channels``.
- ``dropblock``: ``drop_prob`` and ``block_size``, with one mask shared by all channels
  (the package draws one per sample). Its real drop is below ``drop_prob``: its seed
  rate ``drop_prob / block_size**2`` ignores the valid region.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from convdrop import layers as L

__all__ = ["PACKAGES", "Peer", "Recipe", "identify", "is_linear_scheduler", "recipe"]

# source -> the importable package a model's peer layers come from
PACKAGES = {"torchvision": "torchvision", "timm": "timm", "dropblock": "dropblock"}


@dataclass(frozen=True)
class Recipe:
    """convdrop's layer for one peer module.

    Attributes:
        layer: :class:`convdrop.DropBlock2d` or :class:`convdrop.DropBlock3d`.
        p: the rate the peer asks for (its nominal drop probability).
        block_size: the peer's block side.
        defaults: the options the peer's behaviour implies (``shared_channels``,
            ``inplace``); the caller's options override them.
    """

    layer: type[L.Regularizer]
    p: float
    block_size: int
    defaults: Mapping[str, Any] = field(default_factory=dict)

    def build(self, options: Mapping[str, Any], p: float | None = None) -> L.Regularizer:
        """The layer, at rate ``p`` (default: the peer's), with ``options`` over defaults."""
        rate = self.p if p is None else p
        return self.layer(rate, self.block_size, **{**self.defaults, **options})


Maker = Callable[[nn.Module, type[L.Regularizer]], Recipe]


@dataclass(frozen=True)
class Peer:
    """A recognized peer module: whose it is and what its class is called.

    Attributes:
        source: "torchvision", "timm" or "dropblock".
        name: the peer class matched, e.g. "dropblock.DropBlock2D".
        overrides: methods a user's subclass redefines over the peer class; a layer
            with any is left alone, since its forward may not be the peer's.
    """

    source: str
    name: str
    overrides: tuple[str, ...]
    make: Maker
    layer: type[L.Regularizer]


def _rate(value: object, name: str) -> float:
    """A peer's rate attribute as a float (the package's ramp leaves numpy floats)."""
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None


def _torchvision(module: nn.Module, layer: type[L.Regularizer]) -> Recipe:
    return Recipe(layer, _rate(module.p, "p"), module.block_size,
                  {"inplace": bool(module.inplace)})


def _timm(module: nn.Module, layer: type[L.Regularizer]) -> Recipe:
    made = L.timm_drop_block(
        _rate(module.drop_prob, "drop_prob"), module.block_size,
        _rate(getattr(module, "gamma_scale", 1.0), "gamma_scale"),
        with_noise=bool(getattr(module, "with_noise", False)),
        inplace=bool(getattr(module, "inplace", False)),
        couple_channels=bool(getattr(module, "couple_channels", True)),
        scale_by_keep=bool(getattr(module, "scale_by_keep", True)))
    return Recipe(layer, made.p, made.block_size,
                  {"shared_channels": made.shared_channels, "inplace": made.inplace})


def _package(module: nn.Module, layer: type[L.Regularizer]) -> Recipe:
    return Recipe(layer, _rate(module.drop_prob, "drop_prob"), module.block_size,
                  {"shared_channels": True})


# (package, class name) -> (recipe maker, convdrop layer)
_CLASSES: dict[tuple[str, str], tuple[Maker, type[L.Regularizer]]] = {
    ("torchvision", "DropBlock2d"): (_torchvision, L.DropBlock2d),
    ("torchvision", "DropBlock3d"): (_torchvision, L.DropBlock3d),
    ("timm", "DropBlock2d"): (_timm, L.DropBlock2d),
    ("dropblock", "DropBlock2D"): (_package, L.DropBlock2d),
    ("dropblock", "DropBlock3D"): (_package, L.DropBlock3d),
}


def _package_of(cls: type) -> str:
    return cls.__module__.partition(".")[0]


def is_linear_scheduler(module: nn.Module) -> bool:
    """Whether ``module`` is (a subclass of) the ``dropblock`` package's ``LinearScheduler``."""
    return any(cls.__name__ == "LinearScheduler" and _package_of(cls) == "dropblock"
               for cls in type(module).__mro__)


def _redefined(classes: tuple[type, ...]) -> tuple[str, ...]:
    """Methods the user's subclasses between a module's class and the peer class define."""
    return tuple(sorted({name for cls in classes for name, value in vars(cls).items()
                         if callable(value) and not name.startswith("__")
                         and name != "extra_repr"}))


def identify(module: nn.Module) -> Peer | None:
    """The :class:`Peer` that ``module`` is an instance of, or None."""
    mro = type(module).__mro__
    for depth, cls in enumerate(mro):
        entry = _CLASSES.get((_package_of(cls), cls.__name__))
        if entry is not None:
            source = _package_of(cls)
            return Peer(source, f"{source}.{cls.__name__}", _redefined(mro[:depth]), *entry)
    return None


def recipe(module: nn.Module) -> Recipe:
    """convdrop's :class:`Recipe` for a peer ``module``; ``ValueError`` says why there is
    none (a rate out of [0, 1], a block that is not a positive int, timm's noise...)."""
    peer = identify(module)
    if peer is None:
        raise ValueError(f"{type(module).__name__} is not a peer DropBlock")
    if peer.overrides:
        raise ValueError(f"{type(module).__name__} subclasses {peer.name} and redefines "
                         f"{', '.join(peer.overrides)}")
    made = peer.make(module, peer.layer)
    made.build({}, made.p)  # checks p and block_size now, so a bad one is reported, not swapped
    return made
