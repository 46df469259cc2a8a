"""A small CIFAR-style CNN with the variants of the "batch norm vs dropout" study.

Three stages of two 3x3 convs (widths w, 2w, 3w) with 2x2 max pooling, then a
dense head: 2x2 adaptive average pool, Linear(12w -> 128), ReLU, dropout site,
Linear(128 -> classes). At w = 32 it has about 0.25M parameters and runs at any
input size (32x32, 224x224). Paths: ``stage{1,2,3}.{conv,bn,relu,drop}{1,2}``,
``stage{1,2,3}.pool`` and ``head.{pool,flatten,fc1,relu,drop,fc2}``.

The study (see DESIGN.md) compared, on CIFAR-100, a CNN with nothing between its
convs, with dropout 0.1 between them, and with batch norm (conv -> BN -> ReLU),
and concluded: batch norm between convolutions, dropout only in the dense head.

========================  ====================================  ================
variant                   between convs (after each conv-ReLU)  dense head
========================  ====================================  ================
``"control"``             nothing                               nothing
``"dropout"``             Dropout, p = 0.1                      nothing
``"batchnorm"``           BatchNorm (conv -> BN -> ReLU)        nothing
``"head_dropout"``        nothing                               Dropout, p = 0.5
``"dropblock"``           DropBlock, p = 0.1                    nothing
``"spatial_dropout"``     SpatialDropout, p = 0.1               nothing
========================  ====================================  ================

Options override the variant: ``batchnorm=True/False``; ``dropblock=p`` puts
DropBlock between convs (with "batchnorm": after each conv-BN-ReLU, the runner's
"batch norm + scheduled DropBlock"); ``dropout=p`` sets the rate of the variant's
between-conv dropout or spatial dropout, or else of the head's dropout. The
default ``block_size`` is 3: maps are 32, 16 and 8 wide at 32x32 input.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, replace

import torch
from torch import nn

from convdrop.models._common import check_block, check_rates, init_weights, make_regularizer
from convdrop.ops import validate as v

__all__ = ["VARIANTS", "SimpleCNN", "simple_cnn"]

HIDDEN = 128


@dataclass(frozen=True)
class Plan:
    """What goes where in a :class:`SimpleCNN`."""

    batchnorm: bool = False  # conv -> BN -> ReLU instead of conv -> ReLU
    conv_kind: str | None = None  # regularizer after each conv block: dropout/dropblock/...
    conv_p: float = 0.0  # its rate
    head_p: float = 0.0  # dropout rate in the dense head
    block_size: int = 3  # DropBlock's block


VARIANTS: dict[str, Plan] = {
    "control": Plan(),
    "dropout": Plan(conv_kind="dropout", conv_p=0.1),
    "batchnorm": Plan(batchnorm=True),
    "head_dropout": Plan(head_p=0.5),
    "dropblock": Plan(conv_kind="dropblock", conv_p=0.1),
    "spatial_dropout": Plan(conv_kind="spatial_dropout", conv_p=0.1),
}


def _stage(c_in: int, c_out: int, plan: Plan) -> nn.Sequential:
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    for i, channels in enumerate((c_in, c_out), start=1):
        layers[f"conv{i}"] = nn.Conv2d(channels, c_out, 3, padding=1, bias=not plan.batchnorm)
        if plan.batchnorm:
            layers[f"bn{i}"] = nn.BatchNorm2d(c_out)
        layers[f"relu{i}"] = nn.ReLU(inplace=True)
        layers[f"drop{i}"] = make_regularizer(plan.conv_kind, plan.conv_p, plan.block_size)
    layers["pool"] = nn.MaxPool2d(2)
    return nn.Sequential(layers)


class SimpleCNN(nn.Module):
    """Stacks of 3x3 convs, pooling and a dense head; see the module docstring."""

    def __init__(self, num_classes: int, in_channels: int, plan: Plan, width: int = 32) -> None:
        super().__init__()
        widths = (width, 2 * width, 3 * width)
        self.stage1 = _stage(in_channels, widths[0], plan)
        self.stage2 = _stage(widths[0], widths[1], plan)
        self.stage3 = _stage(widths[1], widths[2], plan)
        self.head = nn.Sequential(OrderedDict(
            pool=nn.AdaptiveAvgPool2d(2), flatten=nn.Flatten(),
            fc1=nn.Linear(4 * widths[2], HIDDEN), relu=nn.ReLU(inplace=True),
            drop=make_regularizer("dropout", plan.head_p), fc2=nn.Linear(HIDDEN, num_classes),
        ))
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (Tensor[N, in_channels, H, W]), H, W >= 8 -> logits (Tensor[N, num_classes])."""
        return self.head(self.stage3(self.stage2(self.stage1(x))))


def resolve(variant: str, *, dropout: float | None = None, dropblock: float | None = None,
            batchnorm: bool | None = None, block_size: int = 3) -> Plan:
    """The :class:`Plan` of ``variant`` with the options applied (see the module table)."""
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {sorted(VARIANTS)}, got {variant!r}")
    plan = replace(VARIANTS[variant], block_size=check_block(block_size))
    if batchnorm is not None:
        if not isinstance(batchnorm, bool):
            raise ValueError(f"batchnorm must be True or False, got {batchnorm!r}")
        plan = replace(plan, batchnorm=batchnorm)
    if dropblock is not None:
        if plan.conv_kind not in (None, "dropblock"):
            raise ValueError(f"dropblock={dropblock!r} conflicts with variant {variant!r}, "
                             f"which already has {plan.conv_kind} between convs; expected a "
                             f"variant in ['batchnorm', 'control', 'dropblock', 'head_dropout']")
        plan = replace(plan, conv_kind="dropblock", conv_p=check_rates(dropblock=dropblock)[
            "dropblock"])
    if dropout is not None:
        rate = check_rates(dropout=dropout)["dropout"]
        between = plan.conv_kind in ("dropout", "spatial_dropout")
        plan = replace(plan, conv_p=rate) if between else replace(plan, head_p=rate)
    return plan


def simple_cnn(num_classes: int = 10, in_channels: int = 3, *, variant: str = "control",
               dropout: float | None = None, dropblock: float | None = None,
               batchnorm: bool | None = None, block_size: int = 3, width: int = 32) -> SimpleCNN:
    """Build a :class:`SimpleCNN`; ``width`` is the first stage's channel count."""
    v.check_positive_int(num_classes, "num_classes")
    v.check_positive_int(in_channels, "in_channels")
    v.check_positive_int(width, "width")
    plan = resolve(variant, dropout=dropout, dropblock=dropblock, batchnorm=batchnorm,
                   block_size=block_size)
    return SimpleCNN(num_classes, in_channels, plan, width)
