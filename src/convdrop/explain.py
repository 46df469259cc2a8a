"""``convdrop explain``: a toy fully connected net computed by hand with explicit dropout masks.

Dropout is easiest to trust once you have done it with pencil and paper. This module runs
one training-time forward pass with given 0/1 masks and prints every step (input, mask,
masked and scaled values, ``z = W·a + b``, activation), then the same network at inference.

* ``inverted`` scaling (the modern convention, as in ``torch.nn.Dropout``): kept units are
  multiplied by ``1/(1-p)`` in training, so inference is the plain network.
* ``none`` scaling (classic dropout, Srivastava et al. 2014, JMLR 15): no scaling in training;
  at inference every layer's input is multiplied by ``1-p`` (the same as using ``(1-p)·W``),
  so each unit receives its expected training-time input.

``masks[0]`` masks the input ``x`` and ``masks[i]`` masks the output of ``layers[i-1]``: in
other words ``masks[i]`` is the mask on the input of ``layers[i]``. The output layer's output
is never masked and biases are never dropped.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "EXAMPLE_NET", "ForwardPass", "LayerStep", "ToyLayer", "ToyNet", "Walkthrough",
    "add_cli", "load_net", "parse_net", "render_markdown", "render_text", "run", "to_json",
    "walkthrough",
]

SCALINGS = ("inverted", "none")
ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "relu": torch.relu,
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
    "none": lambda z: z,
}
_NET_KEYS = ("x", "layers", "masks", "p", "scaling")
_LAYER_KEYS = ("W", "b", "activation")
_EXPAND_MAX_INPUTS = 8  # wider layers print z as a vector, not one sum per unit

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
    """A validated toy net; construction raises ``ValueError`` on any inconsistency."""

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
        raise ValueError(f"scaling must be one of {', '.join(SCALINGS)}; got {scaling!r}")
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p < 1.0:
        why = " (inverted scaling divides by 1 - p = 0)" if p == 1 and scaling == "inverted" else ""
        raise ValueError(f"p must be a number in [0, 1), got {p!r}{why}")


def _check_shapes(net: ToyNet) -> None:
    if net.x.dim() != 1:
        raise ValueError(f"x must be a vector, got shape {tuple(net.x.shape)}")
    if not net.layers:
        raise ValueError("layers must hold at least one layer")
    if len(net.masks) != len(net.layers):
        raise ValueError(
            f"expected {len(net.layers)} masks (one for the input and one per hidden layer; "
            f"the output layer is never masked), got {len(net.masks)}"
        )
    n_in, source = net.x.numel(), f"x has shape ({net.x.numel()},)"
    for i, (layer, mask) in enumerate(zip(net.layers, net.masks)):
        W, b = layer.W, layer.b
        if W.dim() != 2 or W.shape[1] != n_in:
            raise ValueError(
                f"layers[{i}].W has shape {tuple(W.shape)} but {source}: "
                f"W must be (out, in) with in = {n_in}"
            )
        if b.shape != (W.shape[0],):
            raise ValueError(
                f"layers[{i}].b has shape {tuple(b.shape)} but layers[{i}].W has shape "
                f"{tuple(W.shape)}: b must have shape ({W.shape[0]},)"
            )
        if mask.shape != (n_in,):
            raise ValueError(
                f"masks[{i}] has shape {tuple(mask.shape)} but layers[{i}] takes {n_in} inputs "
                f"({source}): masks[{i}] must have shape ({n_in},)"
            )
        if not bool(((mask == 0) | (mask == 1)).all()):
            raise ValueError(f"masks[{i}] must contain only 0 and 1, got {mask.tolist()}")
        if net.p == 0 and bool((mask == 0).any()):
            raise ValueError(f"masks[{i}] drops units but p = 0 keeps every unit")
        if not isinstance(layer.activation, str) or layer.activation not in ACTIVATIONS:
            raise ValueError(
                f"layers[{i}].activation must be one of {', '.join(ACTIVATIONS)}; "
                f"got {layer.activation!r}"
            )
        n_in, source = W.shape[0], f"layers[{i}] outputs shape ({W.shape[0]},)"


def _tensor(value: object, name: str, rank: int) -> torch.Tensor:
    """A float64 tensor from nested JSON lists of numbers (a vector or a matrix)."""
    rows = value if rank == 2 else [value]
    kind = "vector (list of finite numbers)" if rank == 1 else "matrix (list of rows of numbers)"
    if not isinstance(value, list) or not value or not all(
        isinstance(r, list) and r and all(_is_number(v) for v in r) for r in rows
    ):
        raise ValueError(f"{name} must be a non-empty {kind}, got {_short(value)}")
    if len({len(r) for r in rows}) != 1:
        raise ValueError(f"{name} has rows of different lengths {[len(r) for r in rows]}")
    return torch.tensor(value, dtype=torch.float64)


def _is_number(value: object) -> bool:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    return ok and abs(float(value)) != float("inf") and value == value  # finite, not NaN


def _short(value: object) -> str:
    text = json.dumps(value, default=repr) if not isinstance(value, float) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _check_keys(
    obj: object, name: str, required: tuple[str, ...], known: tuple[str, ...]
) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise ValueError(f"{name} must be a JSON object, got {type(obj).__name__}")
    missing = [k for k in required if k not in obj]
    if missing:
        raise ValueError(
            f"{name} is missing key(s) {', '.join(missing)} (needs {', '.join(required)})"
        )
    unknown = [k for k in obj if k not in known]
    if unknown:
        raise ValueError(f"{name} has unknown key(s) {', '.join(map(str, unknown))} "
                         f"(known: {', '.join(known)})")
    return obj


def parse_net(net: dict[str, Any]) -> ToyNet:
    """A checked ``ToyNet`` from the JSON form; ``scaling`` defaults to ``"inverted"``."""
    net = _check_keys(net, "the net", _NET_KEYS[:4], _NET_KEYS)
    for key in ("layers", "masks"):
        if not isinstance(net[key], list):
            raise ValueError(f"{key} must be a JSON list, got {_short(net[key])}")
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
        raise ValueError(f"net file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ValueError(f"cannot read net file {path}: {err}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(
            f"{path} is not valid JSON: {err.msg} (line {err.lineno}, column {err.colno})"
        ) from None


# ---------------------------------------------------------------- computation


@dataclass(frozen=True)
class LayerStep:
    """One layer of one forward pass; all tensors are float64 vectors."""

    index: int  # position in ``net.layers``
    activation: str  # name of the activation applied to z
    a_in: torch.Tensor  # (in,) x, or the previous layer's activation, before dropout
    mask: torch.Tensor | None  # (in,) 0/1 mask; None in the inference pass
    scale: float  # multiplier on a_in: 1/(1-p) or 1 in training, (1-p) or 1 at inference
    masked: torch.Tensor  # (in,) a_in * mask * scale: exactly what W multiplies
    z: torch.Tensor  # (out,) W @ masked + b
    a: torch.Tensor  # (out,) activation(z)


@dataclass(frozen=True)
class ForwardPass:
    """All layer steps of one pass; the last step's ``a`` is the prediction."""

    steps: tuple[LayerStep, ...]

    @property
    def output(self) -> torch.Tensor:
        """The network output, shape (n_out,)."""
        return self.steps[-1].a

    @property
    def argmax(self) -> int:
        """Index of the largest output (the predicted class when n_out > 1)."""
        return int(torch.argmax(self.output))

    @property
    def probabilities(self) -> torch.Tensor | None:
        """Softmax of the output, shape (n_out,); None for a single output."""
        return torch.softmax(self.output, dim=0) if self.output.numel() > 1 else None


@dataclass(frozen=True)
class Walkthrough:
    """The training pass with the masks and the inference pass without dropout."""

    net: ToyNet
    training: ForwardPass  # masks applied, scaled by 1/(1-p) for "inverted"
    inference: ForwardPass  # no masks, inputs scaled by (1-p) for "none"


def walkthrough(net: dict[str, Any] | ToyNet) -> Walkthrough:
    """Compute both passes of a toy net (a dict as in the JSON format, or a ``ToyNet``)."""
    toy = net if isinstance(net, ToyNet) else parse_net(net)
    return Walkthrough(toy, _forward(toy, training=True), _forward(toy, training=False))


def _forward(net: ToyNet, *, training: bool) -> ForwardPass:
    inverted = net.scaling == "inverted"
    if training:
        scale = 1.0 / (1.0 - net.p) if inverted else 1.0
    else:
        scale = 1.0 if inverted else 1.0 - net.p
    a = net.x.to(torch.float64)
    steps = []
    for index, (layer, mask) in enumerate(zip(net.layers, net.masks)):
        used = mask.to(torch.float64) if training else None
        masked = (a * used if used is not None else a) * scale  # (in,)
        z = layer.W.to(torch.float64) @ masked + layer.b.to(torch.float64)  # (out,)
        out = ACTIVATIONS[layer.activation](z)
        steps.append(LayerStep(index, layer.activation, a, used, scale, masked, z, out))
        a = out
    return ForwardPass(tuple(steps))


# ---------------------------------------------------------------- rendering

_MASK_NOTE = (
    "masks[0] masks the input x and masks[i] the output of layers[i-1]; "
    "the output layer is never masked and biases are never dropped."
)


def _num(value: float) -> str:
    return f"{float(value) + 0.0:.6g}"  # + 0.0 turns -0.0 into 0.0


def _vec(values: torch.Tensor) -> str:
    return "[" + ", ".join(_num(v) for v in values.tolist()) + "]"


def _term(value: float) -> str:
    text = _num(value)
    return f"({text})" if text.startswith("-") else text


def _unit_sum(net: ToyNet, step: LayerStep, unit: int) -> str:
    """``0.5·8 + 1·0 + (-0.5)·4 + 1``: row ``unit`` of ``W @ masked + b``, spelled out."""
    layer = net.layers[step.index]
    if step.masked.numel() > _EXPAND_MAX_INPUTS:
        return "W·in + b"
    terms = [f"{_term(w)}·{_term(v)}" for w, v in zip(layer.W[unit].tolist(), step.masked.tolist())]
    return " + ".join([*terms, _term(float(layer.b[unit]))])


def _fed(step: LayerStep) -> str:
    """How the vector W multiplies was made from ``a_in``."""
    if step.mask is not None:
        return "a_in·mask" + ("" if step.scale == 1.0 else f"·{_num(step.scale)}")
    return "a_in" + ("" if step.scale == 1.0 else f"·{_num(step.scale)}")


def _head(net: ToyNet, step: LayerStep) -> tuple[str, str]:
    """(layer title, ``a = relu(z)``-style label of the activation)."""
    last = step.index == len(net.layers) - 1
    title = f"layers[{step.index}]: {'output' if last else 'hidden'}, {step.activation}, " \
        f"W {(step.z.numel(), step.masked.numel())}"
    func = "z" if step.activation == "none" else f"{step.activation}(z)"
    return title, f"{'output' if last else 'a'} = {func}"


def _intro(net: ToyNet) -> list[str]:
    sizes = [net.x.numel(), *(layer.W.shape[0] for layer in net.layers)]
    if net.scaling == "inverted":
        note = (f"Inverted dropout: in training each kept unit is multiplied by 1/(1-p) = "
                f"{_num(1 / (1 - net.p))}, so its expected value equals the undropped one; "
                "inference runs the plain network, with no mask and no scaling.")
    else:
        note = ("Classic dropout (scaling none): kept units pass unscaled in training; at "
                f"inference every layer's input is multiplied by (1-p) = {_num(1 - net.p)} "
                "(the same as using (1-p)·W), so each unit sees its expected training input.")
    arch = " -> ".join(map(str, sizes))
    return [f"Network {arch}, p = {_num(net.p)}, scaling = {net.scaling}.", note, _MASK_NOTE]


def _prediction(fp: ForwardPass) -> str:
    if fp.probabilities is None:
        return f"output = {_vec(fp.output)}"
    return f"output = {_vec(fp.output)}, argmax = {fp.argmax}, softmax = {_vec(fp.probabilities)}"


def _passes(result: Walkthrough) -> tuple[tuple[str, ForwardPass], ...]:
    return (("Training pass (with the dropout masks)", result.training),
            ("Inference pass (no dropout)", result.inference))


def _text_step(net: ToyNet, step: LayerStep) -> list[str]:
    title, func = _head(net, step)
    source = "x" if step.index == 0 else f"output of layers[{step.index - 1}]"
    lines = [title, f"  a_in = {_vec(step.a_in)}  ({source})"]
    if step.mask is not None:
        lines.append(f"  mask = {_vec(step.mask)}")
    lines.append(f"  in   = {_fed(step)} = {_vec(step.masked)}")
    lines += [f"  z[{u}] = {_unit_sum(net, step, u)} = {_num(step.z[u])}"
              for u in range(step.z.numel())]
    return [*lines, f"  {func} = {_vec(step.a)}"]


def render_text(result: Walkthrough) -> str:
    """The walkthrough as plain text: every step of both passes, then each prediction."""
    lines = ["Toy dropout walkthrough", *_intro(result.net)]
    for title, fp in _passes(result):
        lines += ["", title, "-" * len(title)]
        for step in fp.steps:
            lines += _text_step(result.net, step)
        lines.append(f"prediction: {_prediction(fp)}")
    return "\n".join(lines) + "\n"


def _md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows] + [""]


def _md_step(net: ToyNet, step: LayerStep) -> list[str]:
    title, func = _head(net, step)
    has_mask = step.mask is not None
    inputs = [[str(i), _num(step.a_in[i]), *([_num(step.mask[i])] if has_mask else []),
               _num(step.masked[i])] for i in range(step.masked.numel())]
    units = [[str(u), _unit_sum(net, step, u), _num(step.z[u]), _num(step.a[u])]
             for u in range(step.z.numel())]
    return [
        f"### {title}", "",
        *_md_table(["input", "a_in", *(["mask"] * has_mask), f"in = {_fed(step)}"], inputs),
        *_md_table(["unit", "W·in + b", "z", func], units),
    ]


def render_markdown(result: Walkthrough) -> str:
    """The walkthrough as Markdown: an input table and a unit table per layer and pass."""
    lines = ["# Toy dropout walkthrough", ""]
    for paragraph in _intro(result.net):
        lines += [paragraph, ""]
    for title, fp in _passes(result):
        lines += [f"## {title}", ""]
        for step in fp.steps:
            lines += _md_step(result.net, step)
        lines += [f"**Prediction:** {_prediction(fp)}", ""]
    return "\n".join(lines)


def _pass_dict(fp: ForwardPass) -> dict[str, Any]:
    layers = [{"z": s.z.tolist(), "a": s.a.tolist(), "masked": s.masked.tolist()} for s in fp.steps]
    return {"layers": layers, "output": fp.output.tolist()}


def to_json(result: Walkthrough) -> str:
    """The walkthrough as a JSON string with exactly these keys.

    ``{"layers": [{"z", "a", "masked"}, ...], "output", "inference": {"layers", "output"}}``.
    ``layers[i]["masked"]`` is the vector ``layers[i].W`` multiplies: the input of layer i
    (x for i = 0, else the ``a`` of layer i-1) times ``masks[i]`` times the training scale
    (``1/(1-p)`` for inverted, 1 for none). In ``inference`` nothing is masked and
    ``masked`` is that input times the test-time scale (``1-p`` for none, 1 for inverted).
    """
    body = {**_pass_dict(result.training), "inference": _pass_dict(result.inference)}
    return json.dumps(body, indent=2)


# ---------------------------------------------------------------- command line


def add_cli(subparsers: argparse._SubParsersAction) -> None:
    """Register ``convdrop explain``."""
    parser = subparsers.add_parser(
        "explain",
        help="walk through dropout on a toy fully connected net, step by step",
        description="Compute a toy fully connected net by hand with explicit dropout masks, "
        "then the same net at inference. Without --file a built-in 2 -> 3 -> 2 -> 2 example runs.",
    )
    parser.add_argument("--file", metavar="NET_JSON", help="JSON net: x, layers, masks, p, scaling")
    out = parser.add_mutually_exclusive_group()
    out.add_argument("--format", choices=("text", "markdown"), default="text")
    out.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("--p", type=float, default=None, help="override the drop probability")
    parser.add_argument("--scaling", choices=("inverted", "none"), default=None,
                        help="override the scaling convention")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Load the net (file or built-in), apply overrides, print the walkthrough."""
    net = load_net(args.file) if args.file else EXAMPLE_NET
    overrides = {k: getattr(args, k) for k in ("p", "scaling") if getattr(args, k) is not None}
    if overrides and isinstance(net, dict):
        net = {**net, **overrides}
    result = walkthrough(net)
    if args.json:
        print(to_json(result))
    elif args.format == "markdown":
        print(render_markdown(result), end="")
    else:
        print(render_text(result), end="")
    return 0
