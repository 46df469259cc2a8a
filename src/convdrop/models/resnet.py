"""ResNets with DropBlock exactly where the paper's TF code puts it (arXiv 1810.12890).

Sites (TF ``resnet_model.py``): groups 3 and 4 only (``layer3``, ``layer4``), group 3
at 1/4 of group 4's rate. Inside a bottleneck block: after conv1+BN+ReLU
(``drop1``), after conv2+BN+ReLU (``drop2``), after conv3+BN before the add
(``drop3``), and on the shortcut branch, projected or not (``drop_shortcut``). In a
basic block: after conv1+BN+ReLU and after conv2+BN, plus the shortcut. With
``dropblock=0`` every site is an ``nn.Identity``.

Parameter and buffer names match torchvision's ResNets (``conv1``, ``bn1``,
``layer1.0.downsample.0.weight``, ``fc``), and regularizers own no parameters, so a
torchvision state dict loads with ``strict=True``. Each block has its own ReLU
instances (``relu1``..), so a placement rule on ReLU hits one call each.
The last BN of every block starts at zero (TF ``init_zero``), so each block starts
as the identity.

Default ``block_size``: 7 for the ImageNet stem (the paper's; 14x14 and 7x7 maps at
224x224), 3 for the CIFAR stem (8x8 and 4x4 maps at 32x32).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from convdrop.models._common import check_block, check_rates, init_weights, make_regularizer
from convdrop.ops import validate as v

__all__ = ["BasicBlock", "Bottleneck", "ResNet", "resnet18", "resnet18_cifar", "resnet50"]

Drop = Callable[[], nn.Module]  # a fresh regularizer (or Identity) per site


def _projection(c_in: int, c_out: int, stride: int) -> nn.Sequential | None:
    if stride == 1 and c_in == c_out:
        return None
    return nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))


class BasicBlock(nn.Module):
    """Two 3x3 convs: (N, c_in, H, W) -> (N, planes, H / stride, W / stride)."""

    expansion = 1

    def __init__(self, c_in: int, planes: int, stride: int, drop: Drop) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu1 = nn.ReLU(inplace=True)
        self.drop1 = drop()
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.drop2 = drop()
        self.downsample = _projection(c_in, planes, stride)
        self.drop_shortcut = drop()
        self.relu2 = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        shortcut = self.drop_shortcut(shortcut)
        out = self.drop1(self.relu1(self.bn1(self.conv1(x))))
        out = self.drop2(self.bn2(self.conv2(out)))
        return self.relu2(out + shortcut)


class Bottleneck(nn.Module):
    """1x1, 3x3 (strided), 1x1 convs: (N, c_in, H, W) -> (N, 4 planes, H / s, W / s)."""

    expansion = 4

    def __init__(self, c_in: int, planes: int, stride: int, drop: Drop) -> None:
        super().__init__()
        c_out = planes * self.expansion
        self.conv1 = nn.Conv2d(c_in, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu1 = nn.ReLU(inplace=True)
        self.drop1 = drop()
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu2 = nn.ReLU(inplace=True)
        self.drop2 = drop()
        self.conv3 = nn.Conv2d(planes, c_out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(c_out)
        self.drop3 = drop()
        self.downsample = _projection(c_in, c_out, stride)
        self.drop_shortcut = drop()
        self.relu3 = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        shortcut = self.drop_shortcut(shortcut)
        out = self.drop1(self.relu1(self.bn1(self.conv1(x))))
        out = self.drop2(self.relu2(self.bn2(self.conv2(out))))
        out = self.drop3(self.bn3(self.conv3(out)))
        return self.relu3(out + shortcut)


class ResNet(nn.Module):
    """A ResNet with stages ``layer1``..``layer4`` and DropBlock in ``layer3``/``layer4``.

    Args:
        block: :class:`BasicBlock` or :class:`Bottleneck`.
        depths: blocks per stage, e.g. (2, 2, 2, 2) for ResNet-18.
        stem: "imagenet" (7x7 stride-2 conv and max pool) or "cifar" (3x3 stride-1 conv).
        dropblock: group 4's DropBlock rate; group 3 gets ``dropblock / 4``.
        dropout: rate of a dropout before ``fc`` (``drop``).
    """

    def __init__(self, block: type[BasicBlock] | type[Bottleneck], depths: tuple[int, ...],
                 num_classes: int, in_channels: int, *, stem: str, dropblock: float,
                 block_size: int, dropout: float) -> None:
        super().__init__()
        self.block_size = block_size
        if stem == "imagenet":
            self.conv1 = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
        else:
            self.conv1 = nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1) if stem == "imagenet" else nn.Identity()
        rates = (0.0, 0.0, dropblock / 4, dropblock)
        c_in = 64
        for i, (depth, rate) in enumerate(zip(depths, rates)):
            planes, stride = 64 * 2**i, 1 if i == 0 else 2
            def drop(rate: float = rate) -> nn.Module:
                return make_regularizer("dropblock", rate, block_size)
            blocks = []
            for j in range(depth):
                blocks.append(block(c_in, planes, stride if j == 0 else 1, drop))
                c_in = planes * block.expansion
            self.add_module(f"layer{i + 1}", nn.Sequential(*blocks))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.drop = make_regularizer("dropout", dropout)
        self.fc = nn.Linear(c_in, num_classes)
        init_weights(self)
        for m in self.modules():
            if isinstance(m, (BasicBlock, Bottleneck)):
                nn.init.zeros_(m.bn3.weight if isinstance(m, Bottleneck) else m.bn2.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (Tensor[N, in_channels, H, W]) -> logits (Tensor[N, num_classes])."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(self.drop(torch.flatten(self.avgpool(x), 1)))


def _build(block: type[BasicBlock] | type[Bottleneck], depths: tuple[int, ...], stem: str,
           default_block: int, num_classes: int, in_channels: int, dropblock: float,
           block_size: int | None, dropout: float) -> ResNet:
    v.check_positive_int(num_classes, "num_classes")
    v.check_positive_int(in_channels, "in_channels")
    rates = check_rates(dropblock=dropblock, dropout=dropout)
    size = default_block if block_size is None else check_block(block_size)
    return ResNet(block, depths, num_classes, in_channels, stem=stem, block_size=size, **rates)


def resnet18_cifar(num_classes: int = 10, in_channels: int = 3, *, dropblock: float = 0.0,
                   block_size: int | None = None, dropout: float = 0.0) -> ResNet:
    """ResNet-18 with a 3x3 stride-1 stem and no max pool (11M parameters); block 3."""
    return _build(BasicBlock, (2, 2, 2, 2), "cifar", 3, num_classes, in_channels,
                  dropblock, block_size, dropout)


def resnet18(num_classes: int = 1000, in_channels: int = 3, *, dropblock: float = 0.0,
             block_size: int | None = None, dropout: float = 0.0) -> ResNet:
    """ResNet-18 with the ImageNet stem; block 7."""
    return _build(BasicBlock, (2, 2, 2, 2), "imagenet", 7, num_classes, in_channels,
                  dropblock, block_size, dropout)


def resnet50(num_classes: int = 1000, in_channels: int = 3, *, dropblock: float = 0.0,
             block_size: int | None = None, dropout: float = 0.0) -> ResNet:
    """ResNet-50 (v1.5, stride in the 3x3 conv) with the ImageNet stem; block 7.

    The paper's setting is ``dropblock=0.1`` (keep_prob 0.9), ``block_size=7``, ramped
    linearly with :class:`convdrop.DropRateScheduler`.
    """
    return _build(Bottleneck, (3, 4, 6, 3), "imagenet", 7, num_classes, in_channels,
                  dropblock, block_size, dropout)
