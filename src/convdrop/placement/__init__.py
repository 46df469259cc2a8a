"""Where regularizers go and how strong they are over training.

``rules`` inserts layers into any model, ``budget`` reports the sites and their
expected drop, ``schedules`` drives ``p`` from the training step. Imports only
``convdrop.layers`` and ``convdrop.ops`` below it.
"""

from convdrop.placement.budget import Site, drop_budget, sites
from convdrop.placement.rules import Rule, regularize, unregularize
from convdrop.placement.schedules import DropRateScheduler, get_schedule

__all__ = ["DropRateScheduler", "Rule", "Site", "drop_budget", "get_schedule", "regularize",
           "sites", "unregularize"]
