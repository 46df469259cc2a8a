"""Device names as the user writes them (``auto``, ``cpu``, ``cuda:1``), checked and resolved.

A root utility: the experiment runner and the benchmarks both take ``--device``, and
neither may import the other, so the one resolver lives below both. Imports nothing
from convdrop's layers.
"""

from __future__ import annotations

import torch

from convdrop.errors import ArgumentError

__all__ = ["DEVICE_TYPES", "resolve_device"]

DEVICE_TYPES = ("cpu", "cuda", "mps")


def resolve_device(name: str = "auto") -> torch.device:
    """``"auto"`` picks cuda, then mps, then cpu; else ``"cpu"``, ``"cuda[:i]"``, ``"mps"``."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps" if torch.backends.mps.is_available() else "cpu")
    try:
        device = torch.device(name) if isinstance(name, str) else None
    except RuntimeError:
        device = None
    if device is None or device.type not in DEVICE_TYPES:
        raise ArgumentError(f"device must be 'auto' or one of {DEVICE_TYPES} (cuda:i), "
                            f"got {name!r}")
    available = {"cpu": True, "cuda": torch.cuda.is_available(),
                 "mps": torch.backends.mps.is_available()}
    if not available[device.type]:
        raise ArgumentError(f"device {name!r} is not available on this machine; use 'auto' "
                            "or 'cpu'")
    return device
