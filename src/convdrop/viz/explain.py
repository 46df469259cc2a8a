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

import json
from dataclasses import dataclass
from typing import Any

import torch

from convdrop._tables import markdown_table
from convdrop.viz.explain_net import (
    ACTIVATIONS,
    EXAMPLE_NET,
    NetError,
    ToyLayer,
    ToyNet,
    load_net,
    parse_net,
)

__all__ = [
    "EXAMPLE_NET", "ForwardPass", "LayerStep", "ToyLayer", "ToyNet", "Walkthrough",
    "load_net", "parse_net", "render_markdown", "render_text", "to_json",
    "walkthrough",
]

_EXPAND_MAX_INPUTS = 8  # wider layers print z as a vector, not one sum per unit


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
    passes = {name: _forward(toy, training=name == "training") for name in ("training",
                                                                          "inference")}
    for name, forward in passes.items():
        _check_finite(forward, name)
    return Walkthrough(toy, passes["training"], passes["inference"])


def _check_finite(forward: ForwardPass, name: str) -> None:
    """A ``NetError`` naming the first layer whose values overflow float64 (inf or NaN)."""
    for step in forward.steps:
        for label, values in (("inputs after dropout", step.masked), ("z", step.z),
                              ("output", step.a)):
            if not bool(torch.isfinite(values).all()):
                raise NetError(
                    f"the {name} pass overflows float64 at layers[{step.index}]: its {label} "
                    f"{_vec(values)} are not finite; the inputs or weights are too large "
                    "(keep them well below 1e308)")


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
    return [markdown_table(header, rows), ""]


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
