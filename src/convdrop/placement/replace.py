"""One line from the peers: swap torchvision's, timm's and the ``dropblock`` package's
DropBlocks in a model for convdrop's, ramps included.

A model built on a peer keeps its structure and weights: every peer DropBlock becomes
convdrop's layer with the same rate and block at the same path (regularizers own no
parameters, so ``state_dict`` keys and eval output do not change), and the rate becomes
the fraction really dropped (calibrated), which none of the peers gets right on every
map. The ``dropblock`` package's ``LinearScheduler`` keeps its ramp in a plain counter,
outside ``state_dict``, and is stepped wherever the user calls ``step()`` (its example
does it in ``forward``, so evaluation advances it); it becomes convdrop's layer and a
:class:`DropRateScheduler` with the same ramp, stepped by the training loop and saved in
its ``state_dict``. What cannot be mapped stays as it was and is named in one warning.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from torch import nn

from convdrop import _extras
from convdrop import layers as L
from convdrop.errors import ArgumentError, UserError, did_you_mean
from convdrop.placement.peers import PACKAGES, identify, is_linear_scheduler, recipe
from convdrop.placement.scheduler import DropRateScheduler

__all__ = ["OPTIONS", "SOURCES", "PackageRamp", "PeerNotInstalledError", "Replaced",
           "replace_dropblocks", "replace_timm_dropblocks"]

SOURCES = ("any", "torchvision", "dropblock", "timm")
OPTIONS = ("shared_channels", "calibrated", "scale", "inplace", "generator")


class PeerNotInstalledError(UserError, ImportError):
    """``source=`` names a peer package that is not installed (so no model holds its layers)."""


class PackageRamp:
    """The ``dropblock`` package's ``LinearScheduler`` ramp as a schedule
    ``f(step, total_steps) -> factor``.

    The package's ``step()`` sets its layer's ``drop_prob`` to the next of ``values =
    np.linspace(start_value, stop_value, nr_steps)`` and then holds the last, and its
    README calls it at the start of each batch, so batch ``k`` (from 0) runs at
    ``values[min(k, n - 1)]``. convdrop's scheduler is stepped at the end of each batch
    (after the optimizer step), so at step ``k`` the rate is that same value: every batch
    runs at the rate it had with the package. The factor is that rate over ``target``,
    the ramp's largest value, which the scheduler's regularizers hold as their ``p`` (so
    rates equal the package's to within a rounding of the division). ``total_steps`` is
    ignored: the ramp's length is ``n``.
    """

    def __init__(self, values: np.ndarray) -> None:
        self.values = np.array(values, dtype=np.float64).reshape(-1)
        if self.values.size == 0:
            raise ValueError("a LinearScheduler with nr_steps=0 never ramps; expected >= 1")
        self.target = float(self.values.max())
        self.__name__ = (f"dropblock.LinearScheduler({self.values[0]:g}->"
                         f"{self.values[-1]:g} over {self.values.size} steps)")

    def rate(self, step: int) -> float:
        """The package's ``drop_prob`` in batch ``step`` (its ``step()`` called first)."""
        return float(self.values[min(step, self.values.size - 1)])

    def __call__(self, step: int, total_steps: int) -> float:
        return self.rate(step) / self.target if self.target > 0 else 0.0

    def __repr__(self) -> str:
        return self.__name__


class Replaced(list):
    """The paths :func:`replace_dropblocks` swapped, in model order (a ``list[str]``).

    Attributes:
        schedulers: one :class:`DropRateScheduler` per distinct ``LinearScheduler`` ramp
            replaced (the layers of wrappers with the same ramp share one); call
            ``step()`` on each after every optimizer step and save their ``state_dict``.
        unmapped: path -> why that peer module was left as it was.
    """

    def __init__(self, paths: list[str], schedulers: list[DropRateScheduler],
                 unmapped: dict[str, str]) -> None:
        super().__init__(paths)
        self.schedulers = schedulers
        self.unmapped = unmapped

    @property
    def scheduler(self) -> DropRateScheduler | None:
        """The one scheduler, or None if no ``LinearScheduler`` was replaced."""
        if len(self.schedulers) > 1:
            raise ValueError(f"the model had {len(self.schedulers)} different LinearScheduler "
                             f"ramps; step each of .schedulers")
        return self.schedulers[0] if self.schedulers else None


@dataclass
class _Plan:
    layers: dict[str, L.Regularizer] = field(default_factory=dict)  # path -> new layer
    ramps: dict[str, tuple[PackageRamp, int]] = field(default_factory=dict)  # (ramp, steps)
    unmapped: dict[str, str] = field(default_factory=dict)
    built: dict[int, L.Regularizer] = field(default_factory=dict)  # id(peer) -> new layer


def _check_source(source: object) -> None:
    if source not in SOURCES:
        raise ArgumentError(f"source must be one of {', '.join(map(repr, SOURCES))}, got "
                            f"{source!r}{did_you_mean(source, SOURCES)}")
    if source != "any" and _extras.missing([PACKAGES[source]]):
        fix = "pip install dropblock" if source == "dropblock" else "pip install 'convdrop[vision]'"
        raise PeerNotInstalledError(
            f"source={source!r} names a package that is not installed, so no model holds its "
            f"layers: {fix}, or pass source='any'")


def _check_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """The caller's convdrop options (timm's ``couple_channels`` read as ``shared_channels``),
    checked once on a probe layer so a bad one fails before the model changes."""
    options = dict(options)
    if "couple_channels" in options:
        if "shared_channels" in options:
            raise ArgumentError("options: pass shared_channels or timm's couple_channels, "
                                "not both")
        options["shared_channels"] = options.pop("couple_channels")
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise ArgumentError(f"options {unknown} are not convdrop DropBlock options; expected "
                            f"some of {list(OPTIONS)} (or timm's couple_channels)")
    try:
        L.DropBlock2d(0.0, 1, **options)
    except (TypeError, ValueError) as err:
        raise ArgumentError(f"options: {err}") from None
    return options


def _ramp_of(wrapper: nn.Module) -> tuple[PackageRamp | None, int]:
    """The wrapper's ramp (None for ``nr_steps=0``, which never changes the rate) and how
    many times it was stepped; ``ValueError`` if unusable."""
    inner = getattr(wrapper, "dropblock", None)
    peer = identify(inner) if isinstance(inner, nn.Module) else None
    if peer is None or peer.source != "dropblock":
        raise ValueError(f"LinearScheduler wraps {type(inner).__name__}; only the dropblock "
                         f"package's DropBlock2D/3D are mapped")
    values = np.asarray(getattr(wrapper, "drop_values", []), dtype=np.float64)
    steps = getattr(wrapper, "i", 0)
    if values.size and not (0.0 <= values.min() and values.max() <= 1.0):
        raise ValueError(f"LinearScheduler ramps drop_prob over [{values.min():g}, "
                         f"{values.max():g}]; expected values in [0, 1]")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"LinearScheduler.i must be an int >= 0, got {steps!r}")
    return (PackageRamp(values) if values.size else None), steps


def _plan_one(plan: _Plan, path: str, module: nn.Module, options: dict[str, Any]) -> None:
    """Record convdrop's layer for the peer (or wrapper) ``module`` at ``path``, or why not."""
    if id(module) in plan.built:  # one instance at several paths stays one instance
        plan.layers[path] = plan.built[id(module)]
        return
    try:
        if path == "":
            raise ValueError("the model itself is a peer layer; build convdrop's in its place")
        if is_linear_scheduler(module):
            ramp, steps = _ramp_of(module)
            layer = recipe(module.dropblock).build(options, None if ramp is None else ramp.target)
            if ramp is not None:
                plan.ramps[path] = (ramp, steps)
        else:
            layer = recipe(module).build(options)
    except (TypeError, ValueError) as err:
        plan.unmapped[path] = f"{type(module).__name__}: " + " ".join(str(err).split())
        return
    layer.train(module.training)  # a model swapped in eval mode stays in eval mode
    plan.built[id(module)] = plan.layers[path] = layer


def _plan(model: nn.Module, source: str, options: dict[str, Any]) -> _Plan:
    plan, wrappers = _Plan(), []
    for path, module in model.named_modules(remove_duplicate=False):
        inside = next((w for w in wrappers if path.startswith(w + ".")), None)
        peer = identify(module)
        if inside is not None:  # a wrapper's layer goes with it, or stays with it
            if peer is not None and peer.source == source != "dropblock":
                plan.unmapped[path] = (f"wrapped by the dropblock package's LinearScheduler at "
                                       f"{inside!r}; pass source='any' or 'dropblock'")
        elif is_linear_scheduler(module):
            wrappers.append(path)
            if source in ("any", "dropblock"):
                _plan_one(plan, path, module, options)
        elif peer is not None and source in ("any", peer.source):
            _plan_one(plan, path, module, options)
    return plan


def _schedulers(plan: _Plan) -> list[DropRateScheduler]:
    """One scheduler per distinct ramp, at the step the package's wrapper had reached."""
    groups: dict[tuple, tuple[PackageRamp, int, dict[str, L.Regularizer]]] = {}
    for path, (ramp, steps) in plan.ramps.items():
        key = (ramp.values.tobytes(), steps)
        groups.setdefault(key, (ramp, steps, {}))[2][path] = plan.layers[path]
    schedulers = []
    for ramp, steps, layers in groups.values():
        sched = DropRateScheduler(layers, ramp, total_steps=ramp.values.size)
        if steps:
            sched.load_state_dict({"step": steps, "total_steps": ramp.values.size,
                                   "targets": sched.targets})
        schedulers.append(sched)
    return schedulers


def _warn_unmapped(unmapped: Mapping[str, str], limit: int = 3) -> None:
    if not unmapped:
        return
    shown = "; ".join(f"{path} ({why})" for path, why in list(unmapped.items())[:limit])
    more = f"; and {len(unmapped) - limit} more (see .unmapped)" if len(unmapped) > limit else ""
    warnings.warn(f"replace_dropblocks left {len(unmapped)} peer module(s) as they were: "
                  f"{shown}{more}", stacklevel=3)


def replace_dropblocks(model: nn.Module, *, source: str = "any", **options: Any) -> Replaced:
    """Swap every peer DropBlock in ``model`` for convdrop's layer, in place.

    torchvision's ``DropBlock2d``/``DropBlock3d``, timm's ``DropBlock2d`` and the
    ``dropblock`` package's ``DropBlock2D``/``DropBlock3D`` become
    :class:`convdrop.DropBlock2d`/``3d`` with the same rate and block size, calibrated so
    the rate is the fraction dropped; a package ``LinearScheduler(layer, start_value,
    stop_value, nr_steps)`` becomes that layer at the wrapper's path plus a
    :class:`DropRateScheduler` with the same ramp (``Replaced.schedulers``), continuing
    from the wrapper's step count: call its ``step()`` after each optimizer step, and each
    batch runs at the rate the package's (stepped at the start of a batch) gave it; see
    :class:`PackageRamp`. Regularizers own no parameters, so ``state_dict`` keys
    and the eval output are unchanged.

    Args:
        model: any ``nn.Module`` holding peer layers.
        source: "any" (default), or only "torchvision", "dropblock" or "timm"; naming a
            package that is not installed raises :class:`PeerNotInstalledError`.
        options: convdrop layer options over each peer's own (``shared_channels``,
            ``calibrated``, ``scale``, ``inplace``, ``generator``; timm's
            ``couple_channels`` is read as ``shared_channels``). The package's and timm's
            layers share one mask across channels, as they did; torchvision's do not.

    Returns:
        The replaced paths (a list) with ``.schedulers`` and ``.unmapped`` (path -> why a
        peer module stays as it was; also named in one ``UserWarning``).
    """
    _check_source(source)
    options = _check_options(options)
    plan = _plan(model, source, options)
    for path, layer in plan.layers.items():
        parent, _, name = path.rpartition(".")
        model.get_submodule(parent).register_module(name, layer)
    _warn_unmapped(plan.unmapped)
    return Replaced(list(plan.layers), _schedulers(plan), plan.unmapped)


def replace_timm_dropblocks(model: nn.Module, **options: Any) -> Replaced:
    """``replace_dropblocks(model, source="timm", **options)``: each timm ``DropBlock2d``
    becomes :func:`convdrop.timm_drop_block` of its arguments (rate ``drop_prob *
    gamma_scale``), so ``timm.create_model("resnet50", drop_block_rate=0.1)`` keeps timm's
    sites and stage rates with convdrop's calibrated drop (timm drops 0.93 on a 7x7 map at
    0.1). ``couple_channels=False`` gives the paper's per-channel masks."""
    return replace_dropblocks(model, source="timm", **options)
