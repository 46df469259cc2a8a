"""Block sizes larger than every feature map they meet: allowed, but said once.

DropBlock clips a block to each map it drops from (DESIGN.md: a block the size of the map
drops whole channels, which is spatial dropout), so ``block_size = 1000`` on a 32x32
network is valid and trains; a spec that asks for it most likely meant something else,
so the checks before a run name it in one warning line. The maps come from one forward
on the ``meta`` device (the preflight's own), so the check costs no memory.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from convdrop.placement import sites

__all__ = ["oversized_blocks", "oversized_warning"]


def oversized_blocks(model: nn.Module, example: torch.Tensor) -> dict[int, int]:
    """``{block_size: largest map side}`` for each DropBlock block size in ``model`` that
    exceeds every side of every map it drops from in one forward of ``example``."""
    largest: dict[int, int] = {}
    for site in sites(model, example):
        block, shape = site.block_size, site.map_shape
        if site.kind != "dropblock" or not isinstance(block, int) or not shape:
            continue
        largest[block] = max(largest.get(block, 0), *shape[2:])
    return {block: side for block, side in largest.items() if block > side}


def oversized_warning(found: Mapping[int, tuple[int, Sequence[str]]]) -> str | None:
    """One line for ``{block_size: (largest side, methods)}``, or None when empty."""
    if not found:
        return None
    parts = []
    for block, (side, methods) in sorted(found.items()):
        shown = ", ".join(methods[:3]) + (f" and {len(methods) - 3} more"
                                          if len(methods) > 3 else "")
        parts.append(f"{block:,} (largest map side {side}, in {shown})")
    return (f"block_size {'; '.join(parts)} is larger than every feature map it drops from: "
            "the op clips it to each map, so every block drops whole channels, as spatial "
            "dropout does")
