"""Models from torchvision and timm for the runner: ``--model torchvision:NAME`` / ``timm:NAME``.

Any registry name works (``torchvision.models.list_models()``, ``timm.list_models()``).
Models are built with random weights and never downloaded; ``--weights PATH`` loads a
local ``state_dict`` file. Keys whose shapes do not fit the data (the classifier for
another number of classes, a first conv for another number of channels) keep their
fresh initialization and are named in a note; any other missing or unexpected key is
an error. The ``vision`` extra (torchvision, timm) is needed only for these names.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import torch
from torch import nn

from convdrop._extras import MissingExtraError, require
from convdrop.errors import MissingFileError, SpecError

__all__ = ["LIBRARIES", "build", "is_external", "load_weights"]

LIBRARIES = ("torchvision", "timm")


def is_external(name: str) -> bool:
    """Whether ``name`` is ``torchvision:NAME`` or ``timm:NAME``."""
    return name.partition(":")[0] in LIBRARIES and bool(name.partition(":")[2])


def _first_conv(model: nn.Module) -> tuple[nn.Module, str, nn.Conv2d] | None:
    for path, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            parent, _, name = path.rpartition(".")
            return model.get_submodule(parent), name, module
    return None


def _with_channels(model: nn.Module, in_channels: int) -> nn.Module:
    """torchvision models take 3 channels: give the first conv ``in_channels`` inputs."""
    found = _first_conv(model)
    if found is None or found[2].in_channels == in_channels:
        return model
    parent, name, conv = found
    parent.register_module(name, nn.Conv2d(
        in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
        conv.dilation, conv.groups, conv.bias is not None, conv.padding_mode))
    return model


def build(name: str, num_classes: int, in_channels: int, **options: Any) -> nn.Module:
    """A randomly initialized ``torchvision:NAME`` or ``timm:NAME`` model for the data."""
    library, _, arch = name.partition(":")
    try:
        require("vision", f"--model {name}", (library,))
    except MissingExtraError as err:  # the user's to fix: one line, not a traceback
        raise SpecError(str(err)) from err
    try:
        if library == "torchvision":
            models = importlib.import_module("torchvision.models")
            model = models.get_model(arch, weights=None, num_classes=num_classes, **options)
            return _with_channels(model, in_channels)
        timm = importlib.import_module("timm")
        return timm.create_model(arch, pretrained=False, num_classes=num_classes,
                                 in_chans=in_channels, **options)
    except (ValueError, RuntimeError, TypeError, KeyError) as err:
        listing = ("torchvision.models.list_models()" if library == "torchvision"
                   else "timm.list_models()")
        raise SpecError(f"model {name!r} could not be built ({err}); expected a name from "
                        f"{listing} and options it takes") from err


def _state_dict(raw: object, path: Path) -> dict[str, torch.Tensor]:
    for key in ("state_dict", "model"):  # common checkpoint wrappers
        if isinstance(raw, dict) and isinstance(raw.get(key), dict):
            raw = raw[key]
    if not isinstance(raw, dict) or not all(isinstance(v, torch.Tensor) for v in raw.values()):
        raise SpecError(f"weights {str(path)!r} is not a state_dict (a dict of tensors)")
    return raw


def load_weights(model: nn.Module, path: str | Path) -> list[str]:
    """Load a local state_dict into ``model``; returns the keys left out for their shape."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"weights file {str(path)!r} does not exist")
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle, zip or format errors: the file is not a checkpoint
        raise SpecError(f"weights {str(path)!r} could not be read: {err}") from err
    state = _state_dict(raw, path)
    own = model.state_dict()
    left_out = sorted(k for k, t in state.items() if k in own and own[k].shape != t.shape)
    missing, unexpected = model.load_state_dict(
        {k: t for k, t in state.items() if k not in left_out}, strict=False)
    missing = [k for k in missing if k not in left_out]
    if missing or unexpected:
        raise SpecError(f"weights {str(path)!r} do not fit the model: missing keys "
                        f"{missing[:5]}, unexpected keys {unexpected[:5]}")
    return left_out
