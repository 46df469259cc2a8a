"""Built-in sweeps (``convdrop sweep --preset NAME``): the questions users ask.

Each preset is a pair of dicts: ``[experiment]`` fields (beneath a spec file and flags,
above the small-data defaults; ``on_digits`` is its recipe on digits only, see
:data:`convdrop.lab.spec.presets.OVERFIT_RECIPE`) and ``[sweep]`` fields (see
:class:`convdrop.lab.sweep.expand.SweepSettings`). Placement names are read from
:data:`convdrop.lab.spec.methods.PLACEMENTS` when a preset is used, so a preset keeps only
the placements this version of convdrop has.
"""

from __future__ import annotations

import copy
from typing import Any

from convdrop.errors import SpecError
from convdrop.lab.spec.methods import PLACEMENTS
from convdrop.lab.spec.presets import FASHION, OVERFIT_RECIPE, describe_recipe

DEFAULT_PRESET = "dropblock-dose"

# Sites in the deep stages are preferred where a placement work provides them
# ("stage_outputs"); "between_convs" is the model's own sites and always exists.
_DROPOUT_PLACES = ("head", "every_conv", "stage_outputs")
_BUDGET_PLACES = ("head", "every_conv", "stage_outputs")
_DOSE = {"method": "dropblock_scheduled", "p": [0.05, 0.1, 0.2, 0.3], "block_size": [1, 3, 5]}
_BUDGETS = {"method": "dropout", "budget": [0.00025, 0.0005, 0.001, 0.002],
            "placement": list(_BUDGET_PLACES)}

SWEEP_PRESETS: dict[str, tuple[str, dict[str, Any], dict[str, Any]]] = {
    "dropblock-dose": (
        "scheduled DropBlock, p x block size (0.05-0.3 x 1, 3, 5), plus the p = 0 control",
        {"seeds": 3, "on_digits": OVERFIT_RECIPE},
        _DOSE,
    ),
    "dropout-dose": (
        "dropout in the head vs after every conv, p from 0.05 to 0.8, plus the control",
        {"seeds": 3},
        {"method": "dropout", "p": [0.05, 0.1, 0.2, 0.4, 0.8], "placement": list(_DROPOUT_PLACES)},
    ),
    "location-vs-magnitude": (
        "equal drop budget (expected fraction dropped per forward) concentrated in the head "
        "or spread over every conv: dropout at budgets 0.00025-0.002",
        {"seeds": 3, "on_digits": OVERFIT_RECIPE},
        _BUDGETS,
    ),
    "fashion-dose": ("dropblock-dose on Fashion-MNIST, 3 seeds", {**FASHION, "seeds": 3}, _DOSE),
    "fashion-location-vs-magnitude": ("location-vs-magnitude on Fashion-MNIST, 3 seeds",
                                      {**FASHION, "seeds": 3}, _BUDGETS),
}


def sweep_preset(name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Fresh copies of a preset's ``[experiment]`` and ``[sweep]`` fields; placements that
    this version does not have are left out."""
    if name not in SWEEP_PRESETS:
        raise SpecError(f"unknown sweep preset {name!r}: expected one of {sorted(SWEEP_PRESETS)}")
    _, experiment, sweep = copy.deepcopy(SWEEP_PRESETS[name])
    if "placement" in sweep:
        sweep["placement"] = [p for p in sweep["placement"] if p in PLACEMENTS]
    return {"name": name, **experiment}, sweep


def describe_sweep_presets() -> str:
    """One line per preset, for ``convdrop presets``."""
    width = max(len(name) for name in SWEEP_PRESETS)
    return "\n".join(f"{name:<{width}}  {text}{describe_recipe(fields)}"
                     for name, (text, fields, _) in SWEEP_PRESETS.items())
