"""Pieces the model zoo shares: regularizer-or-identity factories and option checks."""

from __future__ import annotations

from torch import nn

from convdrop.layers import DropBlock2d, Dropout, SpatialDropout
from convdrop.ops import validate as v

REGULARIZERS = ("dropout", "dropblock", "spatial_dropout")


def make_regularizer(kind: str | None, p: float, block_size: int = 3) -> nn.Module:
    """A fresh convdrop regularizer of ``kind`` at rate ``p``, or ``nn.Identity`` if p == 0.

    Identity keeps a model without regularizers free of no-op layers, and a
    :class:`convdrop.DropRateScheduler` finds only sites that can drop something.
    """
    if kind is None or p == 0.0:
        return nn.Identity()
    if kind == "dropblock":
        return DropBlock2d(p, block_size)
    if kind == "spatial_dropout":
        return SpatialDropout(p)
    if kind == "dropout":
        return Dropout(p)
    raise ValueError(f"regularizer kind must be one of {REGULARIZERS} or None, got {kind!r}")


def check_rates(**rates: float) -> dict[str, float]:
    """Each named rate as a float in [0, 1] (ValueError naming the option otherwise)."""
    return {name: v.check_p(p, name) for name, p in rates.items()}


def check_block(block_size: int) -> int:
    """A square block side >= 1; the op clips it to each feature map."""
    return v.check_positive_int(block_size, "block_size")


def init_weights(model: nn.Module) -> None:
    """He-normal convs (fan_out), unit BN, default Linear: the torchvision ResNet init.

    A model built on the ``meta`` device (the checks before a run, a sweep's drop budgets)
    has no values to set, so it is left as it is, which is most of such a build's time."""
    for m in model.modules():
        if any(p.is_meta for p in m.parameters(recurse=False)):
            continue
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
