"""Wide ResNets (Zagoruyko & Komodakis 2016, arXiv 1605.07146), WRN-d-k for CIFAR.

depth = 6 n + 4: a 3x3 stem with 16 channels, three stages ``layer1``..``layer3`` of
n pre-activation blocks with 16k, 32k, 64k channels, then BN, ReLU, global average
pool and ``fc``. Each block is bn/relu/conv/bn/relu/dropout/conv + residual, with the
``dropout`` option at the ``dropout`` site between the two convs (WRN's 0.3 on CIFAR).
The shortcut is a 1x1 conv of the pre-activated input when the shape changes.

``dropblock=p`` mirrors the paper's ResNet placement on WRN's three groups: the last
two only, ``layer2`` at p/4 and ``layer3`` at p; in each block after the second
bn/relu (``drop1``, next to dropout), after conv2 before the add (``drop2``) and on
the shortcut branch (``drop_shortcut``). Default ``block_size`` is 3 (16x16 and 8x8
maps at 32x32 input). Defaults give WRN-16-4 (2.7M parameters).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from convdrop.models._common import check_block, check_rates, init_weights, make_regularizer
from convdrop.ops import validate as v

__all__ = ["WideBlock", "WideResNet", "wide_resnet"]


class WideBlock(nn.Module):
    """Pre-activation block: (N, c_in, H, W) -> (N, c_out, H / stride, W / stride)."""

    def __init__(self, c_in: int, c_out: int, stride: int, dropout: float,
                 drop: Callable[[], nn.Module]) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(c_in)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.relu2 = nn.ReLU(inplace=True)
        self.dropout = make_regularizer("dropout", dropout)
        self.drop1 = drop()
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.drop2 = drop()
        projected = stride != 1 or c_in != c_out
        self.shortcut = nn.Conv2d(c_in, c_out, 1, stride, bias=False) if projected else None
        self.drop_shortcut = drop()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = self.relu1(self.bn1(x))
        shortcut = x if self.shortcut is None else self.shortcut(pre)
        shortcut = self.drop_shortcut(shortcut)
        out = self.drop1(self.dropout(self.relu2(self.bn2(self.conv1(pre)))))
        return self.drop2(self.conv2(out)) + shortcut


class WideResNet(nn.Module):
    """WRN-``depth``-``widen_factor``; see the module docstring."""

    def __init__(self, depth: int, widen_factor: int, num_classes: int, in_channels: int, *,
                 dropout: float, dropblock: float, block_size: int) -> None:
        super().__init__()
        n = (depth - 4) // 6
        widths = (16 * widen_factor, 32 * widen_factor, 64 * widen_factor)
        self.conv1 = nn.Conv2d(in_channels, 16, 3, 1, 1, bias=False)
        c_in = 16
        for i, (width, rate) in enumerate(zip(widths, (0.0, dropblock / 4, dropblock))):
            def drop(rate: float = rate) -> nn.Module:
                return make_regularizer("dropblock", rate, block_size)
            blocks = []
            for j in range(n):
                stride = 2 if i > 0 and j == 0 else 1
                blocks.append(WideBlock(c_in, width, stride, dropout, drop))
                c_in = width
            self.add_module(f"layer{i + 1}", nn.Sequential(*blocks))
        self.bn = nn.BatchNorm2d(c_in)
        self.relu = nn.ReLU(inplace=True)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c_in, num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (Tensor[N, in_channels, H, W]) -> logits (Tensor[N, num_classes])."""
        x = self.layer3(self.layer2(self.layer1(self.conv1(x))))
        return self.fc(torch.flatten(self.avgpool(self.relu(self.bn(x))), 1))


def wide_resnet(num_classes: int = 10, in_channels: int = 3, *, depth: int = 16,
                widen_factor: int = 4, dropout: float = 0.0, dropblock: float = 0.0,
                block_size: int = 3) -> WideResNet:
    """WRN-``depth``-``widen_factor``, e.g. depth=28, widen_factor=10 for WRN-28-10."""
    v.check_positive_int(num_classes, "num_classes")
    v.check_positive_int(in_channels, "in_channels")
    v.check_positive_int(widen_factor, "widen_factor")
    wrn_depth = "6n + 4 with n >= 1 (10, 16, 22, 28, 40, ...)"
    if v.check_int(depth, "depth", 10, expected=wrn_depth) % 6 != 4:
        raise ValueError(f"depth must be {wrn_depth}, got {depth!r}")
    rates = check_rates(dropout=dropout, dropblock=dropblock)
    return WideResNet(depth, widen_factor, num_classes, in_channels,
                      block_size=check_block(block_size), **rates)
