"""Built-in experiments (``convdrop presets`` lists them).

Each preset is a dict of :class:`convdrop.lab.spec.experiment.ExperimentSpec` fields; a spec
file or flags override any of them. Its ``on_digits`` entry, if any, is its recipe on the
default data, digits, only (see :data:`OVERFIT_RECIPE`). Variants are named
``<method>_<what changes>`` (``dropout_p30`` = dropout at p = 0.3, ``dropblock_b5`` =
DropBlock with block 5).
"""

from __future__ import annotations

import copy
from typing import Any

from convdrop.errors import SpecError

# Beneath any preset on the bundled data (digits, synthetic), so it finishes in minutes on
# 2 CPU cores: a 300-image stratified training subset, 10 epochs, two worker processes,
# and simple_cnn at width 16 (77k parameters). Other data start from the spec defaults.
SMALL_DATA_DEFAULTS: dict[str, Any] = {
    "train_size": 300, "epochs": 10, "batch_size": 32, "lr": 3e-3, "workers": 2,
}
SMALL_MODEL_OPTIONS: dict[str, dict[str, Any]] = {"simple_cnn": {"width": 16}}
SMALL_DATA = ("digits", "synthetic")
# Beneath any preset on Fashion-MNIST (with or without :PATH), with simple_cnn at width 16 too:
# a recipe whose control overfits, at about 75 s of one core per run. 2,000 of the 55,000
# training images, no augmentation (itself a regularizer), 30 epochs; the spec's batch, lr and
# schedule. Measured once, control seed 0: train 98.3 %, test 83.8 %, validation loss lowest at
# epoch 15 and rising after, validation accuracy flat (83-84 %) from epoch 18.
FASHION_DEFAULTS: dict[str, Any] = {"train_size": 2000, "epochs": 30, "augment": "none",
                                    "workers": 2}
DATA_DEFAULTS = {**dict.fromkeys(SMALL_DATA, SMALL_DATA_DEFAULTS),
                 "fashion-mnist": FASHION_DEFAULTS}  # by dataset kind
FASHION: dict[str, Any] = {"data": "fashion-mnist", "on_digits": {}}  # its own recipe

# A preset that asks "does it help?" keeps its recipe for digits under "on_digits" (above
# SMALL_DATA_DEFAULTS, beneath everything else, ignored on other data): a regularizer can
# only help a control that overfits. On digits the defaults above leave
# the control still rising (validation +6.8 pp over its last 5 epochs); 100 images, 20
# epochs and batch 8 make it overfit (a train - validation gap of +13.7 pp, validation
# flat over the last 5 epochs). Measured 2026-12-03, see the README's regime section.
OVERFIT_RECIPE: dict[str, Any] = {"train_size": 100, "epochs": 20, "batch_size": 8}

_REGULARIZERS: dict[str, Any] = {
    "methods": [
        "control", "dropout", "spatial_dropout", "dropblock", "dropblock_scheduled",
        "batchnorm", "batchnorm_dropblock", "cutout", "label_smoothing",
        "dropblock_label_smoothing",
    ],
    "seeds": 3,
    "on_digits": OVERFIT_RECIPE,
}

_BN_VS_DROPOUT: dict[str, Any] = {
    "methods": ["control", "dropout_p10", "dropout_p30", "batchnorm", "head_dropout"],
    "method_options": {
        "dropout_p10": {"base": "dropout", "p": 0.1},
        "dropout_p30": {"base": "dropout", "p": 0.3},
        "head_dropout": {"base": "dropout", "placement": "head", "p": 0.5},
    },
    "seeds": 3,
}

_PLACEMENT: dict[str, Any] = {
    "methods": [
        "control", "head_dropout_p10", "head_dropout_p50", "head_dropout_p90",
        "conv_dropout_p01", "conv_dropout_p10", "conv_bn_dropout_p10", "wrn_dropout_p10",
    ],
    "method_options": {
        "head_dropout_p10": {"base": "dropout", "placement": "head", "p": 0.1},
        "head_dropout_p50": {"base": "dropout", "placement": "head", "p": 0.5},
        "head_dropout_p90": {"base": "dropout", "placement": "head", "p": 0.9},
        "conv_dropout_p01": {"base": "dropout", "placement": "every_conv", "p": 0.01},
        "conv_dropout_p10": {"base": "dropout", "placement": "every_conv", "p": 0.1},
        "conv_bn_dropout_p10": {"base": "dropout", "placement": "conv_dropout_bn_relu",
                                "p": 0.1},
        "wrn_dropout_p10": {"base": "dropout", "placement": "wide_resnet", "p": 0.1},
    },
    "seeds": 3,
}

_BLOCK_SIZE: dict[str, Any] = {
    "methods": ["control", "dropblock_b1", "dropblock_b3", "dropblock_b5", "dropblock_b7",
                "dropblock_full"],
    "method_options": {
        "dropblock_b1": {"base": "dropblock_scheduled", "block_size": 1},
        "dropblock_b3": {"base": "dropblock_scheduled", "block_size": 3},
        "dropblock_b5": {"base": "dropblock_scheduled", "block_size": 5},
        "dropblock_b7": {"base": "dropblock_scheduled", "block_size": 7},
        "dropblock_full": {"base": "dropblock_scheduled", "block_size": 1024},
    },
    "seeds": 3,
}

_SCHEDULE: dict[str, Any] = {
    "methods": ["control", "dropblock", "dropblock_scheduled"],
    "seeds": 5,
}

PRESETS: dict[str, tuple[str, dict[str, Any]]] = {
    "regularizers": (
        "the default: control, dropout, spatial dropout, DropBlock (constant and scheduled), "
        "batch norm (+ DropBlock), Cutout, label smoothing (+ DropBlock)",
        _REGULARIZERS,
    ),
    "bn-vs-dropout": (
        "the CIFAR-100 'batch norm vs dropout' study: control, dropout between convs at "
        "p=0.1/0.3, batch norm between convs, dropout only in the head",
        _BN_VS_DROPOUT,
    ),
    "placement": (
        "location vs magnitude: head-only dropout at 0.1/0.5/0.9, after every conv at "
        "0.01/0.1, conv/dropout/bn/relu, and the Wide-ResNet pattern",
        _PLACEMENT,
    ),
    "block-size": (
        "scheduled DropBlock with block 1 (= dropout), 3, 5, 7 and the full map "
        "(= spatial dropout)",
        _BLOCK_SIZE,
    ),
    "schedule": ("DropBlock at a constant rate vs the paper's linear ramp", _SCHEDULE),
    "fashion-regularizers": ("the ten methods of regularizers on Fashion-MNIST (2,000 training "
                             "images, 30 epochs; apt-get install dataset-fashion-mnist), 3 seeds",
                             {**_REGULARIZERS, **FASHION}),
    "fashion-bn-vs-dropout": ("bn-vs-dropout on Fashion-MNIST, 5 seeds",
                              {**_BN_VS_DROPOUT, **FASHION, "seeds": 5}),
}


def preset_fields(name: str) -> dict[str, Any]:
    """A fresh copy of a preset's spec fields, with ``name`` set."""
    if name not in PRESETS:
        raise SpecError(f"unknown preset {name!r}: expected one of {sorted(PRESETS)}")
    return {"name": name, **copy.deepcopy(PRESETS[name][1])}


def describe_recipe(fields: dict[str, Any]) -> str:
    """A preset's own recipe on digits in words, or ``""``."""
    recipe = fields.get("on_digits")
    if not recipe:
        return ""
    return f" [on digits: {', '.join(f'{key} {value}' for key, value in recipe.items())}]"


def describe_presets() -> str:
    """One line per preset, for ``convdrop presets``."""
    width = max(len(name) for name in PRESETS)
    return "\n".join(f"{name:<{width}}  {text}{describe_recipe(fields)}"
                     for name, (text, fields) in PRESETS.items())
