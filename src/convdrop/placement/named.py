"""Named placements for any model: ``place(model, "after_bn", 0.1)`` and a report of where.

Rules (:class:`Rule`) say where by path and type; a named placement works those out
for a model it has never seen and reports where the sites landed and what it left out:

- ``"after_conv"``: after every ``Conv2d``, i.e. on its raw output, before its BN.
- ``"after_bn"``: after every ``BatchNorm2d`` (timm's ``BatchNormAct2d``, which
  includes the activation, too).
- ``"stage_outputs"``: after the last module of each resolution (a ResNet's
  ``layer1``..``layer4``, an EfficientNet's last block of each stride); needs an
  ``example_input``, since resolutions are found by running it.
- ``"paper_resnet"``: the DropBlock paper's 36 ResNet-50 sites: the last two stages
  (the third at p/4), after each conv+BN of every block and on every shortcut. A
  torchvision or timm ResNet's identity shortcuts have no module to hook, so it
  refuses and points to :func:`convdrop.models.create`, whose ResNets have all of them
  and load torchvision checkpoints with ``strict=True``.

Squeeze-excitation modules are left out everywhere (their maps are 1x1).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from convdrop.placement import rules as R
from convdrop.placement.attach import regularize
from convdrop.placement.budget import Site, sites
from convdrop.placement.hooks import probe
from convdrop.placement.rules import Rule

__all__ = ["PLACEMENTS", "Placement", "place"]

PLACEMENTS = ("after_conv", "after_bn", "stage_outputs", "paper_resnet")


@dataclass(frozen=True)
class Placement:
    """Where ``place`` put regularizers.

    Attributes:
        name: the placement.
        sites: the new sites (map shapes filled when an example input was given).
        left_out: matches left out, by reason (e.g. ``{"squeeze-excitation": 32}``).
    """

    name: str
    sites: list[Site]
    left_out: dict[str, int] = field(default_factory=dict)

    def __str__(self) -> str:
        lines = [f"{self.name}: {len(self.sites)} sites"]
        lines += [f"  {s.path} ({s.kind}, p={s.p:.4g}"
                  + (f", map {tuple(s.map_shape[2:])})" if s.map_shape else ")")
                  for s in self.sites]
        lines += [f"  left out: {n} ({why})" for why, n in self.left_out.items() if n]
        return "\n".join(lines)


def _exact(path: str) -> str:
    """A glob that matches ``path`` only (fnmatch's ``[`` escaped)."""
    return path.replace("[", "[[]")


def _aspect(x: object) -> float | None:
    first = x[0] if isinstance(x, tuple) else x
    if isinstance(first, torch.Tensor) and first.dim() == 4:
        return first.shape[2] / first.shape[3]
    return None


def _stage_outputs(model: nn.Module, example_input: object) -> list[str]:
    """The last module at each resolution among the children of the backbone: the module
    whose children's outputs span the most resolutions (``layer1``.., ``features.N``).

    Only (N, C, H, W) outputs with the input's aspect ratio count, so the channels-last
    tensors inside a ConvNeXt block (N, H, W, C) are not taken for resolutions.
    """
    done: list[tuple[str, tuple[int, ...]]] = []
    names = {m: path for path, m in model.named_modules()}
    aspect = _aspect(example_input)

    def record(module: nn.Module, _args: tuple, out: object) -> None:
        if isinstance(out, torch.Tensor) and out.dim() == 4 and names.get(module) and (
                aspect is None or abs(out.shape[2] / out.shape[3] - aspect) <= 0.25 * aspect):
            done.append((names[module], tuple(out.shape[2:])))

    handles = [m.register_forward_hook(record) for m in names]
    try:
        probe(model, example_input)
    finally:
        for handle in handles:
            handle.remove()
    by_parent: dict[str, list[tuple[str, tuple[int, ...]]]] = {}
    for path, sides in done:
        if min(sides) >= 2:
            by_parent.setdefault(path.rpartition(".")[0], []).append((path, sides))
    if not by_parent:
        raise ValueError("placement 'stage_outputs' found no (N, C, H, W) output of 2x2 or "
                         "more in one forward of example_input")
    # the backbone: the parent whose children span the most resolutions (shallowest on ties)
    parent = max(by_parent, key=lambda p: (len({s for _, s in by_parent[p]}), -p.count(".")))
    last = {sides: (order, path) for order, (path, sides) in enumerate(by_parent[parent])}
    return [path for _, path in sorted(last.values())]


def _blocks(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """ResNet blocks: modules with conv1/bn1/conv2/bn2 children, in model order."""
    return [(path, m) for path, m in model.named_modules()
            if all(hasattr(m, n) for n in ("conv1", "bn1", "conv2", "bn2"))
            and isinstance(m.conv1, nn.Conv2d)]


def _paper_rules(model: nn.Module, p: float, block_size: int | None, regularizer: str
                 ) -> list[Rule]:
    from_zoo = type(model).__module__.startswith("convdrop.models")
    if from_zoo:
        raise ValueError("placement 'paper_resnet': this convdrop ResNet has the paper's sites "
                         "built in; create it with convdrop.models.create(name, dropblock=p)")
    blocks = _blocks(model)
    stages = list(dict.fromkeys(path.rpartition(".")[0] for path, _ in blocks))
    if len(stages) < 2:
        raise ValueError(f"placement 'paper_resnet' needs a ResNet (stages of blocks with "
                         f"conv1/bn1/conv2/bn2), found {len(blocks)} such blocks in "
                         f"{type(model).__name__}")
    rates = {stages[-2]: p / 4, stages[-1]: p}
    unreachable = [path for path, b in blocks if path.rpartition(".")[0] in rates
                   and getattr(b, "downsample", None) is None
                   and getattr(b, "drop_shortcut", None) is None]
    if unreachable:
        zoo = "resnet50" if hasattr(blocks[0][1], "bn3") else "resnet18"
        shown = ", ".join(unreachable[:3]) + (", ..." if len(unreachable) > 3 else "")
        raise ValueError(
            f"placement 'paper_resnet': {len(unreachable)} identity shortcuts ({shown}) "
            f"have no module to hook in {type(model).__name__}; build "
            f"convdrop.models.create({zoo!r}, dropblock=p) instead: it has all of the "
            f"paper's sites and loads a torchvision state_dict with strict=True")
    found = []
    for path, block in blocks:
        rate = rates.get(path.rpartition(".")[0])
        if rate is None:
            continue
        norms = [n for n in ("bn1", "bn2", "bn3") if hasattr(block, n)]
        has_projection = getattr(block, "downsample", None) is not None
        shortcut = "downsample" if has_projection else "drop_shortcut"
        for name in [*norms, shortcut]:
            found.append(Rule(regularizer, rate, block_size=block_size,
                              match=_exact(f"{path}.{name}"), types=(nn.Module,)))
    return found


def _rules(model: nn.Module, name: str, p: float, regularizer: str, block_size: int | None,
           match: str, exclude: tuple[str, ...], example_input: object) -> list[Rule]:
    common = {"block_size": block_size, "match": match, "exclude": exclude}
    if name == "after_conv":
        return [Rule(regularizer, p, types=(nn.Conv2d,), **common)]
    if name == "after_bn":
        if not any(isinstance(m, nn.BatchNorm2d) for m in model.modules()):
            raise ValueError(f"placement 'after_bn': {type(model).__name__} has no "
                             f"BatchNorm2d to follow; use 'after_conv' or 'stage_outputs'")
        return [Rule(regularizer, p, types=(nn.BatchNorm2d,), **common)]
    if name == "stage_outputs":
        if example_input is None:
            raise ValueError("placement 'stage_outputs' needs example_input (e.g. "
                             "torch.randn(1, 3, 224, 224)) to find the resolutions")
        return [Rule(regularizer, p, block_size=block_size, match=_exact(path),
                     exclude=exclude, types=(nn.Module,))
                for path in _stage_outputs(model, example_input)]
    if match != "*" or exclude:
        raise ValueError("placement 'paper_resnet' takes no match or exclude: its sites "
                         "are the paper's")
    return _paper_rules(model, p, block_size, regularizer)


def place(model: nn.Module, placement: str, p: float, *, regularizer: str = "dropblock",
          block_size: int | None = None, match: str = "*", exclude: str | Sequence[str] = (),
          example_input: object = None, update: bool = False) -> Placement:
    """Regularize ``model`` in place at a named placement; returns where the sites landed.

    Args:
        placement: one of :data:`PLACEMENTS`.
        p: the target rate (``"paper_resnet"`` gives the second-to-last stage p/4).
        regularizer, block_size: as in :class:`Rule` (block default 7, clipped to maps).
        match, exclude: globs that narrow the placement, as in :class:`Rule`.
        example_input: one input for an eval-mode forward: fills map shapes in the
            report, skips maps smaller than 2x2, and is required by "stage_outputs".
        update: as in :func:`regularize`.
    """
    if placement not in PLACEMENTS:
        raise ValueError(f"placement must be one of {PLACEMENTS}, got {placement!r}")
    exclude = (exclude,) if isinstance(exclude, str) else tuple(exclude)
    rules = _rules(model, placement, p, regularizer, block_size, match, exclude, example_input)
    sides = None if example_input is None else R.map_sides(model, rules, example_input)
    left: dict[str, int] = {}
    for rule in rules:
        for reason, n in R.selection(model, rule, sides)[1].items():
            left[reason] = left.get(reason, 0) + n
    before = {s.path for s in sites(model)}
    regularize(model, rules, example_input=example_input, update=update)
    new = [s for s in sites(model, example_input) if s.path not in before]
    return Placement(placement, new, left)
