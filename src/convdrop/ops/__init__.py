"""The functional core: DropBlock, its seed rates, sampling, kernels and checks.

Everything above (layers, placement, models, lab, viz, bench, cli) may import from
here; nothing here imports from above. Needs torch and numpy only.
"""

from convdrop.ops.functional import (
    block_mask,
    cutout,
    cutout_mask,
    drop_block,
    drop_path,
    dropout,
    spatial_dropout,
)

__all__ = [
    "block_mask", "cutout", "cutout_mask", "drop_block", "drop_path", "dropout",
    "spatial_dropout",
]
