"""Placement rules: what a :class:`Rule` asks for, and which modules of a model it selects.

A rule names module types and a path glob (``match``), leaves out ``exclude`` globs,
squeeze-excitation convs (unless ``include_se``) and maps smaller than ``min_size``,
and says what to put there (``regularizer``, ``p``, ``block_size``, ``position``).
:func:`convdrop.placement.attach.regularize` attaches the sites; listing them and
their expected drop budget lives in :mod:`convdrop.placement.budget`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import KW_ONLY, dataclass
from fnmatch import fnmatchcase

import torch
from torch import nn

from convdrop.ops import validate as v
from convdrop.placement.hooks import inserted_modules, probe

__all__ = ["Rule", "is_squeeze_excitation", "map_sides", "selection", "targets"]

KINDS = ("dropblock", "dropout", "spatial_dropout", "drop_path")
POSITIONS = ("after", "before")
DEFAULT_BLOCK_SIZE = 7  # the paper's ImageNet choice; the op clips it to small maps


@dataclass(frozen=True)
class Rule:
    """Where to attach a regularizer, and which one.

    Args:
        regularizer: "dropblock", "dropout", "spatial_dropout", or a factory called as
            ``factory(p)`` (``factory(p, block_size=...)`` when ``block_size`` is given)
            that returns a fresh module without parameters. Only convdrop
            ``Regularizer`` modules are ramped by :class:`DropRateScheduler`.
        p: drop probability of every inserted regularizer, in [0, 1].
        block_size: DropBlock's block; default 7 (clipped to small maps). The
            DropBlock dimensionality follows the target (``Conv1d`` -> 1d, ``*3d`` -> 3d,
            anything else 2d).
        match: ``fnmatch`` glob on module paths, e.g. ``"layer3.*"``; ``*`` crosses dots.
        exclude: glob(s) of paths to leave out, e.g. ``"*.se.*"`` or ``("layer4.2.*",)``.
        types: module classes to attach to, e.g. ``(nn.Conv2d,)``, ``(nn.ReLU,)``.
            "After a Conv2d" is its raw output: before the BatchNorm and activation
            that follow it (conv -> drop -> BN -> ReLU). Target ``nn.BatchNorm2d`` for
            after the BN.
        position: "after" the target's output or "before" its first input.
        include_se: also attach inside squeeze-excitation modules (torchvision's
            ``SqueezeExcitation``, timm's ``SqueezeExcite``/``SEModule``...). Their convs
            see 1x1 pooled maps, where DropBlock is only channel dropout, so they are
            left out by default.
        min_size: smallest map side (every spatial dim) a site may see; checked only when
            :func:`regularize` gets an ``example_input``. Default 2: no DropBlock on
            1x1 maps.
    """

    regularizer: str | Callable[..., nn.Module]
    p: float
    _: KW_ONLY
    block_size: int | tuple[int, ...] | None = None
    match: str = "*"
    exclude: str | tuple[str, ...] = ()
    types: tuple[type[nn.Module], ...] = (nn.Conv2d,)
    position: str = "after"
    include_se: bool = False
    min_size: int = 2

    def __post_init__(self) -> None:
        reg = self.regularizer
        if not (reg in KINDS if isinstance(reg, str) else callable(reg)):
            raise ValueError(f"regularizer must be one of {KINDS} or a factory, got {reg!r}")
        object.__setattr__(self, "p", v.check_p(self.p))
        if self.block_size is not None:
            v.check_block_size(self.block_size, _ndim_of(self.block_size))
            if reg in ("dropout", "spatial_dropout"):
                raise ValueError(f"block_size applies to dropblock only, got block_size="
                                 f"{self.block_size!r} for {reg!r}")
        if not isinstance(self.match, str) or not self.match:
            raise ValueError(f"match must be a non-empty glob string, got {self.match!r}")
        exclude = (self.exclude,) if isinstance(self.exclude, str) else self.exclude
        if not isinstance(exclude, (tuple, list)) or not all(
                isinstance(g, str) and g for g in exclude):
            raise ValueError(f"exclude must be a glob string or a tuple of them, "
                             f"got {self.exclude!r}")
        object.__setattr__(self, "exclude", tuple(exclude))
        v.check_positive_int(self.min_size, "min_size")
        types = (self.types,) if isinstance(self.types, type) else tuple(self.types)
        if not types or not all(isinstance(t, type) and issubclass(t, nn.Module) for t in types):
            raise ValueError(f"types must be nn.Module subclasses, got {self.types!r}")
        object.__setattr__(self, "types", types)
        if self.position not in POSITIONS:
            raise ValueError(f"position must be one of {POSITIONS}, got {self.position!r}")


def _ndim_of(block_size: int | Sequence[int]) -> int:
    return 1 if isinstance(block_size, int) else max(len(block_size), 1)


_SE_CLASS = re.compile(r"Squeeze|Excit|^(Effective)?SE(Module|Layer|Block)?$")


def is_squeeze_excitation(module: nn.Module) -> bool:
    """Whether ``module`` is a squeeze-excitation block, by its class name (torchvision's
    ``SqueezeExcitation``, timm's ``SqueezeExcite``, ``SEModule``, ``EffectiveSEModule``)."""
    return any(_SE_CLASS.search(cls.__name__) for cls in type(module).__mro__[:-2])


def _inside_se(path: str, modules: dict[str, nn.Module]) -> bool:
    parts = path.split(".")
    return any(is_squeeze_excitation(modules[".".join(parts[:i])]) for i in range(1, len(parts)))


def _candidates(model: nn.Module, rule: Rule, skip: set[int]
                ) -> tuple[list[tuple[str, nn.Module]], dict[str, int]]:
    """Modules the rule matches, and how many were left out, by reason."""
    modules = dict(model.named_modules())
    found, left = [], {"exclude": 0, "squeeze-excitation": 0}
    for path, m in modules.items():
        if not path or id(m) in skip or not isinstance(m, rule.types) \
                or not fnmatchcase(path, rule.match):
            continue
        if any(fnmatchcase(path, glob) for glob in rule.exclude):
            left["exclude"] += 1
        elif not rule.include_se and _inside_se(path, modules):
            left["squeeze-excitation"] += 1
        else:
            found.append((path, m))
    return found, left


def _map_sides(model: nn.Module, example_input: object, targets: dict[str, nn.Module],
               position: dict[str, str]) -> dict[str, tuple[int, ...]]:
    """Spatial shape of the smallest map each target sees (its output, or input for
    "before") in one eval-mode, no-grad forward of ``example_input``."""
    seen: dict[str, tuple[int, ...]] = {}

    def keep(path: str, x: object) -> None:
        if isinstance(x, torch.Tensor) and x.dim() >= 3:
            sides = tuple(x.shape[2:])
            if path not in seen or min(sides) < min(seen[path]):
                seen[path] = sides

    handles = []
    for path, m in targets.items():
        if position[path] == "before":
            handles.append(m.register_forward_pre_hook(
                lambda _m, args, path=path: keep(path, args[0] if args else None)))
        else:
            handles.append(m.register_forward_hook(
                lambda _m, _args, out, path=path: keep(path, out)))
    try:
        probe(model, example_input)
    finally:
        for handle in handles:
            handle.remove()
    return seen


def selection(model: nn.Module, rule: Rule, sides: dict[str, tuple[int, ...]] | None = None
              ) -> tuple[list[tuple[str, nn.Module]], dict[str, int]]:
    """(path, module) of every target of ``rule``, and how many matches were left out by
    reason ("exclude", "squeeze-excitation", "smaller than min_size")."""
    found, left = _candidates(model, rule, inserted_modules(model))
    if sides is not None:
        small = [(p, m) for p, m in found if p in sides and min(sides[p]) < rule.min_size]
        left["smaller than min_size"] = len(small)
        found = [(p, m) for p, m in found if (p, m) not in small]
    return found, left


def map_sides(model: nn.Module, rules: Sequence[Rule], example_input: object
              ) -> dict[str, tuple[int, ...]]:
    """Spatial shape of the smallest map each candidate target of ``rules`` sees."""
    skip = inserted_modules(model)
    position = {path: r.position for r in rules for path, _ in _candidates(model, r, skip)[0]}
    targets = {path: model.get_submodule(path) for path in position}
    return _map_sides(model, example_input, targets, position)


def targets(model: nn.Module, rule: Rule, sides: dict[str, tuple[int, ...]] | None
            ) -> list[tuple[str, nn.Module]]:
    """The targets of ``rule``; a rule that matches nothing is a ``ValueError`` saying why."""
    found, left = selection(model, rule, sides)
    if not found:
        names = sorted({t.__name__ for t in rule.types})
        why = ", ".join(f"{n} left out by {k}" for k, n in left.items() if n)
        raise ValueError(f"{rule!r} matches no module: no path fits match={rule.match!r} "
                         f"with a type in {names}" + (f" ({why})" if why else ""))
    return found
