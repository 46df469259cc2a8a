"""Put regularizers where they belong, in any ``nn.Module``: rules, ``regularize``.

Listing the sites and their expected drop budget lives in :mod:`convdrop.placement.budget`.

How a site is attached. ``regularize`` never replaces or re-parents a module, so no
parameter or buffer name changes and ``load_state_dict(old_checkpoint, strict=True)``
still works. For a match at ``layer1.0.conv1`` it

1. registers a fresh regularizer as a child of the target itself:
   ``layer1.0.conv1.dropblock`` (``...conv1.pre_dropblock`` for ``position="before"``).
   Regularizers own no parameters or buffers, so ``state_dict`` keys are unchanged,
   yet the site shows in ``print(model)`` and ``named_modules``, hence in
   :class:`DropRateScheduler` and scheduler ``scales`` prefixes such as "layer1";
2. adds a forward hook (a pre-hook for "before") on the target that calls that child.
   The hook is a small picklable object holding the host module and the child's
   name, so ``copy.deepcopy``, ``torch.save(model)`` and ``torch.compile`` keep working.

A sibling in the parent was rejected: ``nn.Sequential`` (and loops over a
``ModuleList``) would run it as an extra layer. For the same reason a target that is
itself such a container (e.g. a torchvision stage ``layer3``) hosts nothing; its
nearest non-container ancestor holds the child instead, as ``layer3_dropblock``.
Wrapping the target in a container was rejected because it renames parameters
(``conv1.weight`` -> ``conv1.0.weight``). The child's name makes a second
``regularize`` with the same rules a no-op, and one with other settings an error (or,
with ``update=True``, a replacement); :func:`unregularize` removes both halves. The new
child takes its host's train/eval mode.
A target called at several places in ``forward`` (torchvision reuses one ``relu``
per block) gets its regularizer applied at each call.

Tracers (the hooks live in :mod:`convdrop.placement.hooks`). ``torch.fx`` never runs
the hooks of a ``torch.nn`` leaf such as ``Conv2d``, so a target from ``torch.nn`` gets
``__module__ = "convdrop.placement.site"`` on the instance: fx then traces through it
and records its site as a ``call_module`` node of the regularizer (``unregularize``
removes the mark). ``torch.jit.script`` cannot compile hooks; it is refused with a
message that says what to do (``unregularize`` first: sites do nothing in eval mode).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import KW_ONLY, dataclass
from fnmatch import fnmatchcase

import torch
from torch import nn

from convdrop import layers as L
from convdrop.ops import validate as v
from convdrop.placement import foreign
from convdrop.placement.foreign import DROPBLOCKS
from convdrop.placement.hooks import (
    ApplySite,
    TorchScriptSiteError,
    inserted_modules,
    mark_for_fx,
    probe,
    site_hooks,
    unmark_for_fx,
)

__all__ = [
    "DROPBLOCKS", "Rule", "TorchScriptSiteError", "inserted_modules", "is_squeeze_excitation",
    "map_sides", "regularize", "selection", "site_hooks", "site_kind", "unregularize",
]

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


def _spatial_dims(target: nn.Module) -> int:
    name = type(target).__name__
    return 1 if name.endswith("1d") else 3 if name.endswith("3d") else 2


def _build(rule: Rule, target: nn.Module) -> nn.Module:
    """A fresh regularizer for one site."""
    if rule.regularizer == "dropout":
        return L.Dropout(rule.p)
    if rule.regularizer == "spatial_dropout":
        return L.SpatialDropout(rule.p)
    if rule.regularizer == "drop_path":
        return L.DropPath(rule.p)
    if rule.regularizer == "dropblock":
        cls = DROPBLOCKS[_spatial_dims(target) - 1]
        block = DEFAULT_BLOCK_SIZE if rule.block_size is None else rule.block_size
        return cls(rule.p, block)
    assert callable(rule.regularizer)
    if rule.block_size is None:
        module = rule.regularizer(rule.p)
    else:
        module = rule.regularizer(rule.p, block_size=rule.block_size)
    if not isinstance(module, nn.Module):
        raise ValueError(f"the factory of {rule!r} must return an nn.Module, "
                         f"got {type(module).__name__}")
    if any(True for _ in module.parameters()) or any(True for _ in module.buffers()):
        raise ValueError(f"the factory of {rule!r} returned a module with parameters or "
                         f"buffers; they would change the model's state_dict keys")
    return module


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


def _targets(model: nn.Module, rule: Rule, sides: dict[str, tuple[int, ...]] | None
             ) -> list[tuple[str, nn.Module]]:
    found, left = selection(model, rule, sides)
    if not found:
        names = sorted({t.__name__ for t in rule.types})
        why = ", ".join(f"{n} left out by {k}" for k, n in left.items() if n)
        raise ValueError(f"{rule!r} matches no module: no path fits match={rule.match!r} "
                         f"with a type in {names}" + (f" ({why})" if why else ""))
    return found


_CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)  # their forward walks children


def _host(model: nn.Module, path: str, rule: Rule, module: nn.Module
          ) -> tuple[nn.Module, str, str]:
    """(host, host path, child name) for the regularizer of the site at ``path``.

    The host is the target itself, unless the target is a container whose forward
    would run every child; then the nearest non-container ancestor holds it.
    """
    kind = rule.regularizer if isinstance(rule.regularizer, str) else site_kind(module)
    kind = f"pre_{kind}" if rule.position == "before" else kind
    host_path, rel = path, ""
    while isinstance(model.get_submodule(host_path), _CONTAINERS):
        if not host_path:
            raise ValueError(f"{rule!r} matched {path!r}, an nn.Sequential/ModuleList with no "
                             f"enclosing module that could hold its regularizer")
        host_path, _, last = host_path.rpartition(".")
        rel = f"{last}_{rel}"
    return model.get_submodule(host_path), host_path, f"{rel}{kind}"


def _settings(module: nn.Module) -> tuple:
    """What a re-``regularize`` compares: class, target rate and block."""
    return (type(module), foreign.target_rate(module), getattr(module, "block_size", None))


def _changed(existing: nn.Module, module: nn.Module, site: str, rule: Rule, update: bool
             ) -> bool:
    """Whether an existing site must be replaced; raises if it differs and not ``update``."""
    old, new = _settings(existing), _settings(module)
    if old == new:
        return False
    said = f"{old[0].__name__}(p={old[1]}, block_size={old[2]})"
    asked = f"{new[0].__name__}(p={new[1]}, block_size={new[2]})"
    if not update:
        raise ValueError(f"site {site} exists as {said} but {rule!r} asks for {asked}; pass "
                         f"update=True to replace it, or unregularize(model) first")
    if foreign.owner(existing) is not None:
        raise ValueError(f"site {site} is ramped by a live DropRateScheduler; call its "
                         f"release() before regularize(..., update=True) changes it to {asked}")
    return True


def _plan(model: nn.Module, rules: list[Rule], sides: dict[str, tuple[int, ...]] | None,
          update: bool) -> list[tuple]:
    """Every (target, host, name, regularizer, position) to add; raises before any change."""
    skip, planned, plan = inserted_modules(model), set(), []
    for rule in rules:
        for path, target in _targets(model, rule, sides):
            module = _build(rule, target)
            host, host_path, name = _host(model, path, rule, module)
            site = ".".join(filter(None, (host_path, name)))
            existing = host._modules.get(name)
            if (id(host), name) in planned:
                continue
            if existing is not None and id(existing) in skip:
                if _changed(existing, module, site, rule, update):
                    planned.add((id(host), name))
                    plan.append((None, host, name, module, rule.position))
                continue
            if hasattr(host, name):
                raise ValueError(f"cannot add site {site} for {rule!r}: that attribute "
                                 f"already exists")
            planned.add((id(host), name))
            plan.append((target, host, name, module, rule.position))
    return plan


def regularize(model: nn.Module, rules: Rule | Sequence[Rule], *,
               example_input: object = None, update: bool = False) -> nn.Module:
    """Insert a fresh regularizer at every match of every rule; returns ``model`` (in place).

    Every rule is checked before anything changes: a rule that matches no module
    raises ``ValueError`` naming it. Sites that already exist with the same settings
    are left alone, so applying the same rules twice adds nothing the second time; a
    rule that asks an existing site for another regularizer, ``p`` or block raises
    ``ValueError``, unless ``update=True``, which replaces it.

    Args:
        example_input: optional input (or tuple of inputs) for one eval-mode forward that
            measures each target's map, so each rule's ``min_size`` applies.
        update: replace existing sites whose settings differ from the rules.
    """
    rules = [rules] if isinstance(rules, Rule) else list(rules)
    if not rules or not all(isinstance(r, Rule) for r in rules):
        raise ValueError(f"rules must be a Rule or a non-empty list of Rules, got {rules!r}")
    sides = None if example_input is None else map_sides(model, rules, example_input)
    for target, host, name, module, position in _plan(model, rules, sides, update):
        host.register_module(name, module.train(host.training))  # an eval model stays so
        if target is None:  # an update: the hook already calls host.<name>
            continue
        hook = ApplySite(host, name, position)
        if position == "before":
            target.register_forward_pre_hook(hook)
        else:
            target.register_forward_hook(hook)
        mark_for_fx(target)
    return model


def unregularize(model: nn.Module) -> nn.Module:
    """Remove every site ``regularize`` added (hooks and regularizers); returns ``model``."""
    for module in list(model.modules()):
        for table, key, hook in site_hooks(module):
            del table[key]
            if hook.name in hook.host._modules:
                delattr(hook.host, hook.name)
        unmark_for_fx(module)
    return model


def site_kind(module: nn.Module) -> str:
    """"dropblock", "spatial_dropout", "dropout", "drop_path", "stochastic_depth", or the
    class name in lower case."""
    info = foreign.describe(module)
    return info.kind if info else type(module).__name__.lower()
