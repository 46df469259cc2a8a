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
``regularize`` with the same rules a no-op; :func:`unregularize` removes both halves.
A target called at several places in ``forward`` (torchvision reuses one ``relu``
per block) gets its regularizer applied at each call.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import KW_ONLY, dataclass
from fnmatch import fnmatchcase

import torch
from torch import nn

from convdrop import layers as L
from convdrop.ops import validate as v

DROPBLOCKS = (L.DropBlock1d, L.DropBlock2d, L.DropBlock3d)  # also read by placement.budget

__all__ = [
    "DROPBLOCKS", "Rule", "inserted_modules", "regularize", "site_hooks", "site_kind",
    "unregularize",
]

KINDS = ("dropblock", "dropout", "spatial_dropout")
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
        types: module classes to attach to, e.g. ``(nn.Conv2d,)``, ``(nn.ReLU,)``.
        position: "after" the target's output or "before" its first input.
    """

    regularizer: str | Callable[..., nn.Module]
    p: float
    _: KW_ONLY
    block_size: int | tuple[int, ...] | None = None
    match: str = "*"
    types: tuple[type[nn.Module], ...] = (nn.Conv2d,)
    position: str = "after"

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


class _ApplySite:
    """Forward (pre-)hook that runs ``host.<name>``; picklable and deepcopy-safe."""

    def __init__(self, host: nn.Module, name: str, position: str) -> None:
        self.host, self.name, self.position = host, name, position

    def __call__(self, module: nn.Module, args: tuple, output: object = None) -> object:
        regularizer = getattr(self.host, self.name)
        if self.position == "before":
            if not args or not isinstance(args[0], torch.Tensor):
                raise ValueError(f"site {self.name!r} needs a tensor as first positional input")
            return (regularizer(args[0]), *args[1:])
        if not isinstance(output, torch.Tensor):
            raise ValueError(f"site {self.name!r} needs a tensor output, "
                             f"got {type(output).__name__}")
        return regularizer(output)


def site_hooks(module: nn.Module) -> list[tuple[dict, int, _ApplySite]]:
    """(hook table, key, hook) of every site hook ``regularize`` registered on ``module``."""
    found = []
    for table in (module._forward_hooks, module._forward_pre_hooks):
        found += [(table, key, h) for key, h in table.items() if isinstance(h, _ApplySite)]
    return found


def inserted_modules(model: nn.Module) -> set[int]:
    """ids of every module that ``regularize`` inserted into ``model``."""
    return {id(getattr(h.host, h.name)) for m in model.modules() for _, _, h in site_hooks(m)
            if hasattr(h.host, h.name)}


def _targets(model: nn.Module, rule: Rule, skip: set[int]) -> list[tuple[str, nn.Module]]:
    return [(path, m) for path, m in model.named_modules()
            if path and id(m) not in skip and isinstance(m, rule.types)
            and fnmatchcase(path, rule.match)]


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


def _plan(model: nn.Module, rules: list[Rule]) -> list[tuple]:
    """Every (target, host, name, regularizer, position) to add; raises before any change."""
    skip, planned, plan = inserted_modules(model), set(), []
    for rule in rules:
        targets = _targets(model, rule, skip)
        if not targets:
            names = sorted({t.__name__ for t in rule.types})
            raise ValueError(f"{rule!r} matches no module: no path fits match={rule.match!r} "
                             f"with a type in {names}")
        for path, target in targets:
            module = _build(rule, target)
            host, host_path, name = _host(model, path, rule, module)
            existing = host._modules.get(name)
            if (id(host), name) in planned or existing is not None and id(existing) in skip:
                continue
            if hasattr(host, name):
                raise ValueError(f"cannot add site {'.'.join(filter(None, (host_path, name)))} "
                                 f"for {rule!r}: that attribute already exists")
            planned.add((id(host), name))
            plan.append((target, host, name, module, rule.position))
    return plan


def regularize(model: nn.Module, rules: Rule | Sequence[Rule]) -> nn.Module:
    """Insert a fresh regularizer at every match of every rule; returns ``model`` (in place).

    Every rule is checked before anything changes: a rule that matches no module
    raises ``ValueError`` naming it. Sites that already exist are left alone, so
    applying the same rules twice adds nothing the second time.
    """
    rules = [rules] if isinstance(rules, Rule) else list(rules)
    if not rules or not all(isinstance(r, Rule) for r in rules):
        raise ValueError(f"rules must be a Rule or a non-empty list of Rules, got {rules!r}")
    for target, host, name, module, position in _plan(model, rules):
        host.register_module(name, module)
        hook = _ApplySite(host, name, position)
        if position == "before":
            target.register_forward_pre_hook(hook)
        else:
            target.register_forward_hook(hook)
    return model


def unregularize(model: nn.Module) -> nn.Module:
    """Remove every site ``regularize`` added (hooks and regularizers); returns ``model``."""
    for module in list(model.modules()):
        for table, key, hook in site_hooks(module):
            del table[key]
            if hook.name in hook.host._modules:
                delattr(hook.host, hook.name)
    return model


_CHANNEL_DROPOUTS = (L.SpatialDropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d)


def site_kind(module: nn.Module) -> str:
    """"dropblock", "spatial_dropout", "dropout", or the class name in lower case."""
    if isinstance(module, DROPBLOCKS):
        return "dropblock"
    if isinstance(module, _CHANNEL_DROPOUTS):
        return "spatial_dropout"
    if isinstance(module, (L.Dropout, nn.Dropout)):
        return "dropout"
    return type(module).__name__.lower()
