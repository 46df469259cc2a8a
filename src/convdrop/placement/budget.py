"""What a model drops: its regularizer sites, and the expected drop budget per forward.

``sites`` lists every regularizer (convdrop's, torch's dropout layers, timm's
``DropBlock2d`` and ``DropPath``, torchvision's ``StochasticDepth`` and ``DropBlock2d``,
and those inserted by :func:`convdrop.regularize`); ``drop_budget`` turns them into the
expected fraction of activations dropped per forward pass, so location and magnitude
compare. Each library's real drop is used (:mod:`convdrop.placement.foreign`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from convdrop.placement import foreign
from convdrop.placement.attach import inserted_modules, site_hooks, site_kind
from convdrop.placement.foreign import expected_fraction
from convdrop.placement.hooks import probe

__all__ = ["Site", "drop_budget", "expected_fraction", "sites"]

@dataclass(frozen=True)
class Site:
    """One regularizer in a model.

    Attributes:
        path: its module path, e.g. "layer3.0.drop1" or "layer1.0.conv1.dropblock".
        kind: see :func:`site_kind`.
        p: its current drop probability (None if the module has no float ``p``).
        block_size: DropBlock's block as configured, else None.
        map_shape: shape (batch included) of the tensor entering it in one forward of
            the example input; None without one, or if the forward never reached it.
        target: path of the module it is hooked to, for sites added by ``regularize``.
        position: "after" or "before" for sites added by ``regularize``, else None.
        source: the library of its class: "convdrop", "torch", "timm", "torchvision"
            (None for a module a rule's factory built that convdrop does not know).
    """

    path: str
    kind: str
    p: float | None
    block_size: int | tuple[int, ...] | None
    map_shape: tuple[int, ...] | None = None
    target: str | None = None
    position: str | None = None
    source: str | None = None


def _site_modules(model: nn.Module) -> dict[str, nn.Module]:
    inserted = inserted_modules(model)
    return {path: m for path, m in model.named_modules()
            if foreign.describe(m) is not None or id(m) in inserted}


def _hooked_to(model: nn.Module) -> dict[int, tuple[str, str]]:
    """id of an inserted regularizer -> (target path, position)."""
    return {id(getattr(h.host, h.name)): (path, h.position)
            for path, m in model.named_modules() for _, _, h in site_hooks(m)
            if hasattr(h.host, h.name)}


def _run(model: nn.Module, example_input: object, watch: dict[str, nn.Module]
         ) -> tuple[dict[str, list[tuple[int, ...]]], int]:
    """One eval-mode, no-grad forward: input shapes per watched path, and conv/linear outputs."""
    shapes: dict[str, list[tuple[int, ...]]] = {path: [] for path in watch}
    counted = [0]

    def record(path: str) -> Callable:
        return lambda _m, args: shapes[path].append(tuple(args[0].shape))

    def count(_m: nn.Module, _args: tuple, out: torch.Tensor) -> None:
        counted[0] += out.numel()

    handles = [m.register_forward_pre_hook(record(path)) for path, m in watch.items()]
    handles += [m.register_forward_hook(count) for m in model.modules()
                if isinstance(m, (nn.modules.conv._ConvNd, nn.Linear))]
    try:
        probe(model, example_input)
    finally:
        for handle in handles:
            handle.remove()
    return shapes, counted[0]


def sites(model: nn.Module, example_input: object = None) -> list[Site]:
    """Every regularizer in ``model``: convdrop's, torch's, timm's, torchvision's, inserted ones.

    Args:
        example_input: optional input (or tuple of inputs) for one eval-mode forward
            that fills ``map_shape``; the model's train/eval flags are restored after.
    """
    modules = _site_modules(model)
    shapes = _run(model, example_input, modules)[0] if example_input is not None else {}
    hooked = _hooked_to(model)
    found = []
    for path, m in modules.items():
        info = foreign.describe(m)
        p = foreign.get_rate(m) if info else getattr(m, "p", None)
        target, position = hooked.get(id(m), (None, None))
        seen = shapes.get(path)
        dropblock = info is not None and info.kind == "dropblock"
        found.append(Site(
            path=path, kind=site_kind(m), p=float(p) if isinstance(p, (int, float)) else None,
            block_size=getattr(m, "block_size", None) if dropblock else None,
            map_shape=seen[0] if seen else None, target=target, position=position,
            source=info.source if info else None,
        ))
    return found


def drop_budget(model: nn.Module, example_input: object) -> dict[str, float]:
    """Expected fraction of activations dropped per forward pass, network-wide and per stage.

    Numerator: for every site and every call in one forward of ``example_input``,
    ``expected_fraction * input numel``. Denominator: the number of outputs of every
    Conv and Linear layer in that forward, the same for any placement, so 0.9 dropout
    in the head only and 0.001 after every conv can be compared directly.

    Returns:
        ``{"total": f, <stage>: f_stage, ...}`` where a stage is a top-level child
        name (the first component of a site's path) and the stages sum to "total".
    """
    modules = _site_modules(model)
    shapes, counted = _run(model, example_input, modules)
    if counted == 0:
        raise ValueError(f"model {type(model).__name__} ran no Conv or Linear layer on "
                         f"example_input, so the budget has no denominator")
    budget = {"total": 0.0, **{name: 0.0 for name, _ in model.named_children()}}
    for path, m in modules.items():
        dropped = sum(expected_fraction(m, s) * math.prod(s) for s in shapes[path]) / counted
        stage = path.split(".")[0]
        budget[stage] = budget.get(stage, 0.0) + dropped
        budget["total"] += dropped
    return budget
