"""The toy network of ``convdrop explain``: its JSON form, example, parsing and checks.

Every problem is a one-line :class:`NetError` (a ``ValueError``) that names the layer and
the shapes.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from convdrop.errors import UserError
from convdrop.ops import validate as v

SCALINGS = ("inverted", "none")
ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "relu": torch.relu,
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
    "none": lambda z: z,
}


class NetError(UserError, ValueError):
    """A toy net (from ``--file``, ``--p``, ``--scaling`` or code) that is not valid."""


_NET_KEYS = ("x", "layers", "masks", "p", "scaling")
_LAYER_KEYS = ("W", "b", "activation")

# 2 -> 3 -> 2 -> 2 with small weights, so every number can be checked by hand.
EXAMPLE_NET: dict[str, Any] = {
    "x": [1, 1],
    "layers": [
        {"W": [[1, 1], [1, -1], [-1, 2]], "b": [0, 1, 0], "activation": "relu"},
        {"W": [[0.5, 1, -0.5], [-1, 2, 1]], "b": [1, 0], "activation": "relu"},
        {"W": [[0.5, 1], [-0.5, 1]], "b": [0, 1], "activation": "none"},
    ],
    "masks": [[1, 1], [1, 0, 1], [1, 1]],
    "p": 0.5,
    "scaling": "inverted",
}


@dataclass(frozen=True)
class ToyLayer:
    """One fully connected layer: ``z = W @ a + b``, then ``activation(z)``."""

    W: torch.Tensor  # (out, in)
    b: torch.Tensor  # (out,)
    activation: str  # a key of ACTIVATIONS


@dataclass(frozen=True)
class ToyNet:
    """A validated toy net; construction raises ``NetError`` on any inconsistency."""

    x: torch.Tensor  # (n_in,) the input vector
    layers: tuple[ToyLayer, ...]  # layers[i].W is (out_i, in_i), in_0 = n_in
    masks: tuple[torch.Tensor, ...]  # masks[i]: (in_i,) 0/1 mask on the input of layers[i]
    p: float  # drop probability the masks were drawn with, in [0, 1)
    scaling: str = "inverted"  # "inverted" (modern) or "none" (classic)

    def __post_init__(self) -> None:
        _check_p_scaling(self.p, self.scaling)
        _check_shapes(self)


def _check_p_scaling(p: object, scaling: object) -> None:
    if scaling not in SCALINGS:
        raise NetError(f"scaling must be one of {', '.join(SCALINGS)}; got {scaling!r}")
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p < 1.0:
        why = " (inverted scaling divides by 1 - p = 0)" if p == 1 and scaling == "inverted" else ""
        raise NetError(f"p must be a number in [0, 1), got {p!r}{why}")


def _check_shapes(net: ToyNet) -> None:
    if net.x.dim() != 1:
        raise NetError(f"x must be a vector, got shape {tuple(net.x.shape)}")
    if not net.layers:
        raise NetError("layers must hold at least one layer")
    if len(net.masks) != len(net.layers):
        raise NetError(
            f"expected {len(net.layers)} masks (one for the input and one per hidden layer; "
            f"the output layer is never masked), got {len(net.masks)}"
        )
    n_in, source = net.x.numel(), f"x has shape ({net.x.numel()},)"
    for i, (layer, mask) in enumerate(zip(net.layers, net.masks)):
        W, b = layer.W, layer.b
        if W.dim() != 2 or W.shape[1] != n_in:
            raise NetError(
                f"layers[{i}].W has shape {tuple(W.shape)} but {source}: "
                f"W must be (out, in) with in = {n_in}"
            )
        if b.shape != (W.shape[0],):
            raise NetError(
                f"layers[{i}].b has shape {tuple(b.shape)} but layers[{i}].W has shape "
                f"{tuple(W.shape)}: b must have shape ({W.shape[0]},)"
            )
        if mask.shape != (n_in,):
            raise NetError(
                f"masks[{i}] has shape {tuple(mask.shape)} but layers[{i}] takes {n_in} inputs "
                f"({source}): masks[{i}] must have shape ({n_in},)"
            )
        if not bool(((mask == 0) | (mask == 1)).all()):
            raise NetError(f"masks[{i}] must contain only 0 and 1, got {mask.tolist()}")
        if net.p == 0 and bool((mask == 0).any()):
            raise NetError(f"masks[{i}] drops units but p = 0 keeps every unit")
        if not isinstance(layer.activation, str) or layer.activation not in ACTIVATIONS:
            raise NetError(
                f"layers[{i}].activation must be one of {', '.join(ACTIVATIONS)}; "
                f"got {layer.activation!r}"
            )
        n_in, source = W.shape[0], f"layers[{i}] outputs shape ({W.shape[0]},)"


def _tensor(value: object, name: str, rank: int) -> torch.Tensor:
    """A float64 tensor from nested JSON lists of numbers (a vector or a matrix)."""
    rows = value if rank == 2 else [value]
    kind = "vector (list of finite numbers)" if rank == 1 else "matrix (list of rows of numbers)"
    if not isinstance(value, list) or not value or not all(
        isinstance(r, list) and r and all(_is_finite(x) for x in r) for r in rows
    ):
        raise NetError(f"{name} must be a non-empty {kind}, got {_short(value)}")
    if len({len(r) for r in rows}) != 1:
        raise NetError(f"{name} has rows of different lengths {[len(r) for r in rows]}")
    return torch.tensor(value, dtype=torch.float64)


def _is_finite(value: object) -> bool:
    return v.is_number(value) and math.isfinite(value)


def _short(value: object) -> str:
    text = json.dumps(value, default=repr) if not isinstance(value, float) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _check_keys(
    obj: object, name: str, required: tuple[str, ...], known: tuple[str, ...]
) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise NetError(f"{name} must be a JSON object, got {type(obj).__name__}")
    missing = [k for k in required if k not in obj]
    if missing:
        raise NetError(
            f"{name} is missing key(s) {', '.join(missing)} (needs {', '.join(required)})"
        )
    unknown = [k for k in obj if k not in known]
    if unknown:
        raise NetError(f"{name} has unknown key(s) {', '.join(map(str, unknown))} "
                         f"(known: {', '.join(known)})")
    return obj


def parse_net(net: dict[str, Any]) -> ToyNet:
    """A checked ``ToyNet`` from the JSON form; ``scaling`` defaults to ``"inverted"``."""
    net = _check_keys(net, "the net", _NET_KEYS[:4], _NET_KEYS)
    for key in ("layers", "masks"):
        if not isinstance(net[key], list):
            raise NetError(f"{key} must be a JSON list, got {_short(net[key])}")
    x = _tensor(net["x"], "x", 1)
    layers = []
    for i, spec in enumerate(net["layers"]):
        spec = _check_keys(spec, f"layers[{i}]", _LAYER_KEYS, _LAYER_KEYS)
        layers.append(ToyLayer(
            _tensor(spec["W"], f"layers[{i}].W", 2), _tensor(spec["b"], f"layers[{i}].b", 1),
            spec["activation"],
        ))
    masks = tuple(_tensor(m, f"masks[{i}]", 1) for i, m in enumerate(net["masks"]))
    return ToyNet(x, tuple(layers), masks, net["p"], net.get("scaling", "inverted"))


def load_net(path: str | Path) -> dict[str, Any]:
    """Read a net JSON file; every failure is a one-line ``ValueError``."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise NetError(f"net file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise NetError(f"cannot read net file {path}: {err}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise NetError(
            f"{path} is not valid JSON: {err.msg} (line {err.lineno}, column {err.colno})"
        ) from None
    except RecursionError:
        raise NetError(f"{path} is nested too deeply to be a net") from None


# ---------------------------------------------------------------- computation
