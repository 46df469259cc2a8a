"""Where regularizers go and how strong they are over training.

``rules`` say where layers go and ``attach`` inserts them into any model, ``named``
places them by name (``after_bn``, ``stage_outputs``, ``paper_resnet``) with a report,
``budget`` reports the sites and their expected drop, ``schedules`` are pure functions
of the training step that ``scheduler`` applies to every ``p``, ``foreign`` reads timm's,
torchvision's and torch's regularizers, ``replace`` swaps the peers' DropBlocks
(``peers`` tells them apart) for convdrop's. Imports only ``convdrop.layers``
and ``convdrop.ops`` below it.
"""

from convdrop.placement.attach import regularize, unregularize
from convdrop.placement.budget import Site, drop_budget, sites
from convdrop.placement.named import PLACEMENTS, Placement, place
from convdrop.placement.replace import replace_dropblocks, replace_timm_dropblocks
from convdrop.placement.rules import Rule
from convdrop.placement.scheduler import DropRateScheduler
from convdrop.placement.schedules import get_schedule

__all__ = ["PLACEMENTS", "DropRateScheduler", "Placement", "Rule", "Site", "drop_budget",
           "get_schedule", "place", "regularize", "replace_dropblocks", "replace_timm_dropblocks",
           "sites", "unregularize"]
