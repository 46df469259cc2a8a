"""A small model zoo with regularizer sites built in: ``create(name, ...)`` and ``names()``.

Options every model understands:

- ``dropblock=p``: the target DropBlock rate. For the ResNets it is group 4's rate
  and group 3 gets p/4 (the paper's placement); Wide ResNets do the same on their
  last two groups; ``simple_cnn`` puts it after every conv block.
- ``block_size=``: DropBlock's block. Default 7 for ImageNet stems (``resnet18``,
  ``resnet50``), 3 for CIFAR stems (``resnet18_cifar``, ``wide_resnet``, ``simple_cnn``).
- ``dropout=p``: the rate of the model's dropout sites: before ``fc`` for the
  ResNets, between the two convs of each block for ``wide_resnet``, per variant for
  ``simple_cnn``.

Model-specific options: ``variant``, ``batchnorm``, ``width`` (``simple_cnn``);
``depth``, ``widen_factor`` (``wide_resnet``). A rate of 0 builds no regularizer at
all (``nn.Identity``). Ramp the targets with :class:`convdrop.DropRateScheduler`.

torchvision and timm users: ``resnet18`` and ``resnet50`` have torchvision's parameter
names, so a torchvision (or timm) ResNet checkpoint loads with ``strict=True`` and gives
the same eval output, now with all of the paper's sites (36 on ResNet-50)::

    model = convdrop.models.create("resnet50", 1000, dropblock=0.1)
    model.load_state_dict(torchvision_model.state_dict(), strict=True)

:func:`convdrop.regularize` cannot reach those sites on torchvision's own ResNet: its
identity shortcuts have no module to hook (29 of 36 are reachable).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from torch import nn

from convdrop.models.resnet import resnet18, resnet18_cifar, resnet50
from convdrop.models.simple_cnn import VARIANTS, simple_cnn
from convdrop.models.wide_resnet import wide_resnet

__all__ = ["VARIANTS", "create", "names", "options"]

_REGISTRY: dict[str, Callable[..., nn.Module]] = {
    "simple_cnn": simple_cnn,
    "resnet18_cifar": resnet18_cifar,
    "resnet18": resnet18,
    "resnet50": resnet50,
    "wide_resnet": wide_resnet,
}


def names() -> list[str]:
    """Every registered model name, sorted."""
    return sorted(_REGISTRY)


def _builder(name: str) -> Callable[..., nn.Module]:
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; expected one of {names()}")
    return _REGISTRY[name]


def options(name: str) -> dict[str, Any]:
    """Option -> default for model ``name`` (``num_classes`` and ``in_channels`` aside)."""
    params = inspect.signature(_builder(name)).parameters.values()
    return {p.name: p.default for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY}


def create(name: str, num_classes: int = 10, in_channels: int = 3, **opts: Any) -> nn.Module:
    """Build model ``name``; e.g. ``create("resnet18_cifar", 100, dropblock=0.1)``.

    Raises:
        ValueError: for an unknown name or option (listing the valid ones), or a bad value.
    """
    valid = options(name)
    unknown = sorted(set(opts) - set(valid))
    if unknown:
        raise ValueError(f"unknown option(s) {unknown} for model {name!r}; "
                         f"expected some of {sorted(valid)}")
    return _builder(name)(num_classes, in_channels, **opts)
