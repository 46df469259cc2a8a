"""Whether a model can train on this machine at all, judged from its size on the ``meta`` device.

A model built on ``meta`` holds no memory, yet knows its parameter count, so a model far
too large (``model_options = { width = 100000 }``: 90 billion parameters) is refused in
one line by the preflight instead of failing inside an allocation, after the header was
printed and ``config.json`` written. The bound is a floor: float32 weights, their
gradients and the optimizer's state per parameter, against the *total* memory of the
device that trains, so a model it refuses can never train there, whatever else runs;
activations and other processes are not counted, so a model it passes may still not fit.
"""

from __future__ import annotations

import os

import torch
from torch import nn

from convdrop.errors import SpecError

__all__ = ["OPTIMIZER_STATES", "check_fits", "device_memory", "training_bytes"]

BYTES_PER_VALUE = 4  # float32: autocast computes in bfloat16 but keeps float32 weights
OPTIMIZER_STATES = {"adamw": 2, "sgd": 1}  # tensors per parameter: moments, or momentum


def training_bytes(model: nn.Module, optimizer: str) -> tuple[int, int]:
    """(parameter count, bytes of weights + gradients + optimizer state + buffers)."""
    params = sum(p.numel() for p in model.parameters())
    buffers = sum(b.numel() for b in model.buffers())
    per_parameter = 2 + OPTIMIZER_STATES.get(optimizer, 2)
    return params, BYTES_PER_VALUE * (params * per_parameter + buffers)


def device_memory(device: torch.device) -> int | None:
    """Total bytes of memory of ``device`` (RAM for the CPU), or None where unknown."""
    try:
        if device.type == "cuda":
            return torch.cuda.get_device_properties(device).total_memory
        if device.type == "cpu":
            return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError, RuntimeError, AssertionError):
        pass
    return None


def _gib(count: int) -> str:
    return f"{count / 2**30:,.1f} GiB"


def check_fits(model: nn.Module, name: str, options: dict, optimizer: str,
               device: torch.device, key: str = "model") -> None:
    """Raise a :class:`SpecError` naming ``key``, the model and its size when training
    ``model`` (built on ``meta``) needs more than the device's total memory."""
    params, needed = training_bytes(model, optimizer)
    total = device_memory(device)
    if total is None or needed <= total:
        return
    chosen = ", ".join(f"{k}={v}" for k, v in options.items())
    shown = f"model {name!r}" + (f" with {chosen}" if chosen else "")
    raise SpecError(f"{key}: {shown} has {params:,} parameters; training it needs at least "
                    f"{_gib(needed)} (float32 weights, gradients and {optimizer} state), more "
                    f"than the {_gib(total)} of memory this {device.type} has; expected a "
                    "smaller model or model_options")
