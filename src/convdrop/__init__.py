"""convdrop: structured dropout for convolutional networks, done right.

DropBlock 1d/2d/3d exact to the paper (arXiv 1810.12890) with a calibrated drop
rate, spatial dropout, dropout and Cutout, as functions and thin modules.
"""

from convdrop import models
from convdrop.layers import (
    Cutout,
    DropBlock1d,
    DropBlock2d,
    DropBlock3d,
    Dropout,
    DropPath,
    Regularizer,
    SpatialDropout,
    timm_drop_block,
)
from convdrop.ops import (
    block_mask,
    cutout,
    cutout_mask,
    drop_block,
    drop_path,
    dropout,
    spatial_dropout,
)
from convdrop.placement import (
    DropRateScheduler,
    Placement,
    Rule,
    Site,
    drop_budget,
    get_schedule,
    place,
    regularize,
    replace_dropblocks,
    replace_timm_dropblocks,
    sites,
    unregularize,
)

__version__ = "0.1.0"

__all__ = [
    "Cutout",
    "DropBlock1d",
    "DropBlock2d",
    "DropBlock3d",
    "DropPath",
    "DropRateScheduler",
    "Dropout",
    "Placement",
    "Regularizer",
    "Rule",
    "Site",
    "SpatialDropout",
    "block_mask",
    "cutout",
    "cutout_mask",
    "drop_block",
    "drop_budget",
    "drop_path",
    "dropout",
    "get_schedule",
    "models",
    "place",
    "regularize",
    "replace_dropblocks",
    "replace_timm_dropblocks",
    "sites",
    "spatial_dropout",
    "timm_drop_block",
    "unregularize",
]
