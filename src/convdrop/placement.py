"""Put regularizers where they belong, in any ``nn.Module``: rules, sites, drop budget.

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

import math
from collections.abc import Callable, Sequence
from dataclasses import KW_ONLY, dataclass
from fnmatch import fnmatchcase

import torch
from torch import nn

from convdrop import _validate as v
from convdrop import layers as L
from convdrop._gamma import clip_block, expected_drop_fraction, paper_gamma

_DROPBLOCKS = (L.DropBlock1d, L.DropBlock2d, L.DropBlock3d)

__all__ = [
    "Rule", "Site", "drop_budget", "expected_fraction", "regularize", "site_kind", "sites",
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
        cls = _DROPBLOCKS[_spatial_dims(target) - 1]
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


def _hooks(module: nn.Module) -> list[tuple[dict, int, _ApplySite]]:
    found = []
    for table in (module._forward_hooks, module._forward_pre_hooks):
        found += [(table, key, h) for key, h in table.items() if isinstance(h, _ApplySite)]
    return found


def _inserted(model: nn.Module) -> set[int]:
    """ids of every module that ``regularize`` inserted into ``model``."""
    return {id(getattr(h.host, h.name)) for m in model.modules() for _, _, h in _hooks(m)
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
    skip, planned, plan = _inserted(model), set(), []
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
        for table, key, hook in _hooks(module):
            del table[key]
            if hook.name in hook.host._modules:
                delattr(hook.host, hook.name)
    return model


# --- sites and drop budget ------------------------------------------------------------

_CHANNEL_DROPOUTS = (L.SpatialDropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d)


def site_kind(module: nn.Module) -> str:
    """"dropblock", "spatial_dropout", "dropout", or the class name in lower case."""
    if isinstance(module, _DROPBLOCKS):
        return "dropblock"
    if isinstance(module, _CHANNEL_DROPOUTS):
        return "spatial_dropout"
    if isinstance(module, (L.Dropout, nn.Dropout)):
        return "dropout"
    return type(module).__name__.lower()


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
    """

    path: str
    kind: str
    p: float | None
    block_size: int | tuple[int, ...] | None
    map_shape: tuple[int, ...] | None = None
    target: str | None = None
    position: str | None = None


def _site_modules(model: nn.Module) -> dict[str, nn.Module]:
    inserted = _inserted(model)
    return {path: m for path, m in model.named_modules()
            if isinstance(m, (L.Regularizer, nn.modules.dropout._DropoutNd)) or id(m) in inserted}


def _hooked_to(model: nn.Module) -> dict[int, tuple[str, str]]:
    """id of an inserted regularizer -> (target path, position)."""
    return {id(getattr(h.host, h.name)): (path, h.position)
            for path, m in model.named_modules() for _, _, h in _hooks(m)
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
    modes = {m: m.training for m in model.modules()}
    try:
        model.eval()
        with torch.no_grad():
            model(*example_input) if isinstance(example_input, tuple) else model(example_input)
    finally:
        for handle in handles:
            handle.remove()
        for m, mode in modes.items():
            m.training = mode
    return shapes, counted[0]


def sites(model: nn.Module, example_input: object = None) -> list[Site]:
    """Every regularizer in ``model`` (convdrop's, torch's dropouts, and inserted ones).

    Args:
        example_input: optional input (or tuple of inputs) for one eval-mode forward
            that fills ``map_shape``; the model's train/eval flags are restored after.
    """
    modules = _site_modules(model)
    shapes = _run(model, example_input, modules)[0] if example_input is not None else {}
    hooked = _hooked_to(model)
    found = []
    for path, m in modules.items():
        p = getattr(m, "p", None)
        target, position = hooked.get(id(m), (None, None))
        seen = shapes.get(path)
        found.append(Site(
            path=path, kind=site_kind(m), p=float(p) if isinstance(p, (int, float)) else None,
            block_size=getattr(m, "block_size", None) if isinstance(m, _DROPBLOCKS) else None,
            map_shape=seen[0] if seen else None, target=target, position=position,
        ))
    return found


def expected_fraction(module: nn.Module, shape: Sequence[int]) -> float:
    """Expected fraction of a (N, C, *spatial) input of ``shape`` that ``module`` drops.

    ``p`` for dropout, spatial dropout and calibrated DropBlock; for
    ``calibrated=False`` DropBlock, the exact fraction the paper's gamma gives.
    """
    p = float(getattr(module, "p", 0.0) or 0.0)
    if not isinstance(module, _DROPBLOCKS) or module.calibrated or p in (0.0, 1.0):
        return p
    spatial = tuple(shape[2:])
    block = clip_block(spatial, v.check_block_size(module.block_size, len(spatial)))
    return expected_drop_fraction(spatial, block, paper_gamma(spatial, block, p))


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
