"""Models from torchvision and timm for the runner: ``--model torchvision:NAME`` / ``timm:NAME``.

Any registry name works (``torchvision.models.list_models()``, ``timm.list_models()``).
Models are built with random weights and never downloaded: a name or option that would
reach for the network or load weights from elsewhere (timm's ``hf-hub:`` and
``local-dir:`` names, ``pretrained=True``) is refused in one line before anything is
built. ``--weights PATH`` loads a local ``state_dict`` file
(:mod:`convdrop.lab.spec.weights`, re-exported here as :func:`load_weights`). The
``vision`` extra (torchvision, timm) is needed only for these names.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Mapping
from typing import Any

from torch import nn

from convdrop._extras import MissingExtraError, require
from convdrop.errors import SpecError
from convdrop.lab.spec.weights import load_weights

__all__ = ["LIBRARIES", "build", "download_problem", "is_external", "load_weights"]

LIBRARIES = ("torchvision", "timm")
# options that make torchvision or timm load or fetch weights (pretrained=True,
# weights="DEFAULT", checkpoint_path, ...); also any option starting with "pretrained"
_FETCHING_OPTIONS = frozenset({"weights", "weights_backbone", "checkpoint_path", "cache_dir",
                               "hf_hub_id", "url", "file"})


def is_external(name: str) -> bool:
    """Whether ``name`` is ``torchvision:NAME`` or ``timm:NAME``."""
    return name.partition(":")[0] in LIBRARIES and bool(name.partition(":")[2])


def download_problem(name: str, options: Mapping[str, Any]) -> str | None:
    """Why building ``name`` with ``options`` would reach for the network or load weights
    from somewhere (None if it would not): a timm source prefix (``hf-hub:`` fetches the
    Hub's config even with random weights, ``local-dir:`` reads a folder), a Hub id, or an
    option such as ``pretrained``. Nothing is downloaded, so these are refused."""
    library, _, arch = name.partition(":")
    if library not in LIBRARIES:
        return None
    if re.match(r"[A-Za-z][\w+.-]*:", arch):
        return (f"model {name!r}: the {arch.partition(':')[0] + ':'!r} prefix makes {library} "
                "fetch from the Hugging Face Hub or read a folder, and convdrop never "
                f"downloads; use a registry name ({library}.list_models()) and a local "
                "state_dict with --weights PATH")
    if "/" in arch or "\\" in arch:
        return (f"model {name!r}: a Hub id or a path, not a registry name, and convdrop never "
                f"downloads; use a registry name ({library}.list_models()) and a local "
                "state_dict with --weights PATH")
    for option in options:
        if option.lower() in _FETCHING_OPTIONS or option.lower().startswith("pretrained"):
            return (f"model_options.{option}: an option that loads or downloads weights, "
                    "and convdrop never downloads; pass a local state_dict with --weights PATH")
    return None


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
    """A randomly initialized ``torchvision:NAME`` or ``timm:NAME`` model for the data;
    refuses a name or option that would download (:func:`download_problem`)."""
    problem = download_problem(name, options)
    if problem:
        raise SpecError(problem)
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
