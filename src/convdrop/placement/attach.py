"""Put regularizers where rules say, in any ``nn.Module``: ``regularize``, ``unregularize``.

Which modules a rule selects lives in :mod:`convdrop.placement.rules`.

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

from collections.abc import Sequence

from torch import nn

from convdrop import layers as L
from convdrop.placement import foreign
from convdrop.placement.foreign import DROPBLOCKS
from convdrop.placement.hooks import (
    ApplySite,
    TorchScriptSiteError,
    inserted_modules,
    mark_for_fx,
    site_hooks,
    unmark_for_fx,
)
from convdrop.placement.rules import DEFAULT_BLOCK_SIZE, Rule, map_sides, targets

__all__ = ["TorchScriptSiteError", "inserted_modules", "regularize", "site_hooks", "site_kind",
           "unregularize"]


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
        for path, target in targets(model, rule, sides):
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
