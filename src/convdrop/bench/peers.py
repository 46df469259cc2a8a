"""Peer DropBlock ops for ``convdrop bench``, each used per channel where it can be.

A peer that does not import is returned as a string saying so, never as an error:
torchvision and timm need a torchvision build that matches the installed torch.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable

import torch

Op = Callable[[torch.Tensor], torch.Tensor]


def _missing(module: str, err: Exception) -> str:
    return f"missing ({module}: {type(err).__name__})"


def torchvision_op(p: float, block: int) -> Op | str:
    """torchvision.ops.drop_block2d: per-channel masks."""
    try:
        ops = importlib.import_module("torchvision.ops")
    except Exception as err:  # ImportError, or a RuntimeError from a mismatched build
        return _missing("torchvision", err)
    size = block if block % 2 else block + 1  # it rejects even sizes
    return lambda x: ops.drop_block2d(x, p, size, training=True)


def timm_op(p: float, block: int) -> Op | str:
    """timm.layers.drop_block_2d, asked for one mask per channel."""
    try:
        drop = importlib.import_module("timm.layers.drop")
    except Exception as err:
        return _missing("timm", err)
    params = inspect.signature(drop.drop_block_2d).parameters
    if "couple_channels" in params:
        options = {"couple_channels": False}
    elif "batchwise" in params:
        options = {"batchwise": False}
    else:
        options = {}
    return lambda x: drop.drop_block_2d(x, p, block, **options)


def dropblock_op(p: float, block: int) -> Op | str:
    """The ``dropblock`` pip package's DropBlock2D (its mask is shared across channels)."""
    try:
        package = importlib.import_module("dropblock")
    except Exception as err:
        return _missing("dropblock", err)
    layer = package.DropBlock2D(drop_prob=p, block_size=block)
    layer.train()
    return layer


def peer_ops(p: float, block: int) -> dict[str, Op | str]:
    """Name -> op for every peer, or -> why it is missing."""
    return {
        "torchvision drop_block2d": torchvision_op(p, block),
        "timm drop_block_2d (per channel)": timm_op(p, block),
        "dropblock 0.3 DropBlock2D (shared)": dropblock_op(p, block),
    }
