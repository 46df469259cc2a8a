"""Tests for ``convdrop.viz.explain``: hand-computed values, JSON form, errors and the CLI."""

from __future__ import annotations

import copy
import itertools
import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch

from convdrop.viz.explain import (
    EXAMPLE_NET,
    ToyLayer,
    ToyNet,
    Walkthrough,
    load_net,
    parse_net,
    render_markdown,
    render_text,
    to_json,
    walkthrough,
)


def _net(**changes: Any) -> dict[str, Any]:
    """A deep copy of the built-in example with top-level keys replaced."""
    net = copy.deepcopy(EXAMPLE_NET)
    net.update(changes)
    return net


def _rows(result: Walkthrough, attr: str, training: bool = True) -> list[list[float]]:
    fp = result.training if training else result.inference
    return [getattr(step, attr).tolist() for step in fp.steps]


# ---------------------------------------------------------------- hand-computed values
# The built-in net: x = [1, 1], p = 0.5, masks [1, 1], [1, 0, 1], [1, 1]
#   W0 = [[1, 1], [1, -1], [-1, 2]], b0 = [0, 1, 0], relu
#   W1 = [[0.5, 1, -0.5], [-1, 2, 1]], b1 = [1, 0], relu
#   W2 = [[0.5, 1], [-0.5, 1]], b2 = [0, 1], none


def test_builtin_inverted_training_by_hand() -> None:
    result = walkthrough(EXAMPLE_NET)
    # scale 1/(1-0.5) = 2
    # layer 0: in = [1, 1]*[1, 1]*2 = [2, 2]
    #   z = [1*2 + 1*2 + 0, 1*2 - 1*2 + 1, -1*2 + 2*2 + 0] = [4, 1, 2]; relu -> [4, 1, 2]
    # layer 1: in = [4, 1, 2]*[1, 0, 1]*2 = [8, 0, 4]
    #   z = [0.5*8 + 0 - 0.5*4 + 1, -8 + 0 + 4 + 0] = [3, -4]; relu -> [3, 0]
    # layer 2: in = [3, 0]*[1, 1]*2 = [6, 0]
    #   z = [0.5*6 + 0 + 0, -0.5*6 + 0 + 1] = [3, -2]; identity
    assert _rows(result, "masked") == [[2, 2], [8, 0, 4], [6, 0]]
    assert _rows(result, "z") == [[4, 1, 2], [3, -4], [3, -2]]
    assert _rows(result, "a") == [[4, 1, 2], [3, 0], [3, -2]]
    assert [s.scale for s in result.training.steps] == [2, 2, 2]
    assert result.training.output.tolist() == [3, -2]
    assert result.training.argmax == 0
    # softmax([3, -2]) = [1, e^-5] / (1 + e^-5)
    expected = [1 / (1 + math.exp(-5)), math.exp(-5) / (1 + math.exp(-5))]
    assert result.training.probabilities.tolist() == pytest.approx(expected, abs=1e-12)
    assert result.training.output.dtype == torch.float64


def test_builtin_inverted_inference_is_the_plain_net() -> None:
    result = walkthrough(EXAMPLE_NET)
    # no mask, no scaling
    # layer 0: z = [1 + 1 + 0, 1 - 1 + 1, -1 + 2 + 0] = [2, 1, 1]; relu -> [2, 1, 1]
    # layer 1: z = [0.5*2 + 1 - 0.5*1 + 1, -2 + 2 + 1 + 0] = [2.5, 1]; relu -> [2.5, 1]
    # layer 2: z = [0.5*2.5 + 1 + 0, -0.5*2.5 + 1 + 1] = [2.25, 0.75]
    assert _rows(result, "masked", training=False) == [[1, 1], [2, 1, 1], [2.5, 1]]
    assert _rows(result, "z", training=False) == [[2, 1, 1], [2.5, 1], [2.25, 0.75]]
    assert result.inference.output.tolist() == [2.25, 0.75]
    assert all(step.mask is None and step.scale == 1 for step in result.inference.steps)
    assert result.inference.argmax == 0


def test_builtin_classic_scaling_by_hand() -> None:
    result = walkthrough(_net(scaling="none"))
    # training, no scaling:
    # layer 0: in = [1, 1]; z = [2, 1, 1]; a = [2, 1, 1]
    # layer 1: in = [2, 1, 1]*[1, 0, 1] = [2, 0, 1]
    #   z = [0.5*2 + 0 - 0.5*1 + 1, -2 + 0 + 1 + 0] = [1.5, -1]; relu -> [1.5, 0]
    # layer 2: in = [1.5, 0]; z = [0.75, -0.75 + 1] = [0.75, 0.25]
    assert _rows(result, "masked") == [[1, 1], [2, 0, 1], [1.5, 0]]
    assert _rows(result, "a") == [[2, 1, 1], [1.5, 0], [0.75, 0.25]]
    # inference, every layer's input times (1-p) = 0.5:
    # layer 0: in = [0.5, 0.5]; z = [1, 0.5 - 0.5 + 1, -0.5 + 1] = [1, 1, 0.5]
    # layer 1: in = [0.5, 0.5, 0.25]
    #   z = [0.25 + 0.5 - 0.125 + 1, -0.5 + 1 + 0.25 + 0] = [1.625, 0.75]
    # layer 2: in = [0.8125, 0.375]
    #   z = [0.40625 + 0.375, -0.40625 + 0.375 + 1] = [0.78125, 0.96875]
    assert _rows(result, "masked", training=False) == [[0.5, 0.5], [0.5, 0.5, 0.25],
                                                      [0.8125, 0.375]]
    assert _rows(result, "z", training=False) == [[1, 1, 0.5], [1.625, 0.75], [0.78125, 0.96875]]
    assert result.inference.argmax == 1
    assert [s.scale for s in result.inference.steps] == [0.5, 0.5, 0.5]


@pytest.mark.parametrize("scaling", ["inverted", "none"])
def test_inference_matches_expected_training_output_of_a_linear_layer(scaling: str) -> None:
    # Both test-time rules are expectation matching: averaging a linear layer's training
    # output over all 2^3 masks (weight p^dropped * (1-p)^kept) gives the inference output.
    p, x, w, b = 0.25, [1.0, -2.0, 3.0], [[1.0, 2.0, -1.0]], [0.5]
    expected = 0.0
    for mask in itertools.product([0, 1], repeat=3):
        net = {"x": x, "layers": [{"W": w, "b": b, "activation": "none"}],
               "masks": [list(mask)], "p": p, "scaling": scaling}
        weight = p ** mask.count(0) * (1 - p) ** mask.count(1)
        expected += weight * walkthrough(net).training.output.item()
    net["masks"] = [[1, 1, 1]]
    assert walkthrough(net).inference.output.item() == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize(
    ("activation", "expected"),
    [("relu", 0.0), ("sigmoid", 1 / (1 + math.exp(1))), ("tanh", math.tanh(-1)), ("none", -1)],
)
def test_activations_on_a_single_unit(activation: str, expected: float) -> None:
    # in = 2*[1]*1/(1-0.5) = [4]; z = -0.5*4 + 1 = -1
    net = {"x": [2], "layers": [{"W": [[-0.5]], "b": [1], "activation": activation}],
           "masks": [[1]], "p": 0.5}
    result = walkthrough(net)
    assert result.training.steps[0].z.item() == -1
    assert result.training.output.item() == pytest.approx(expected, abs=1e-12)
    assert result.training.probabilities is None  # single output: no softmax
    assert "softmax" not in render_text(result)


def test_walkthrough_accepts_a_toynet() -> None:
    toy = ToyNet(
        x=torch.tensor([1.0, 2.0]),
        layers=(ToyLayer(torch.tensor([[1.0, 1.0]]), torch.tensor([0.0]), "none"),),
        masks=(torch.tensor([0.0, 1.0]),),
        p=0.5,
    )
    # in = [1, 2]*[0, 1]*2 = [0, 4]; z = 0 + 4 + 0 = 4
    assert walkthrough(toy).training.output.tolist() == [4.0]
    assert walkthrough(toy).inference.output.tolist() == [3.0]


# ---------------------------------------------------------------- rendering


def test_to_json_has_the_documented_keys_and_values() -> None:
    result = walkthrough(EXAMPLE_NET)
    data = json.loads(to_json(result))
    assert set(data) == {"layers", "output", "inference"}
    assert set(data["inference"]) == {"layers", "output"}
    for layers in (data["layers"], data["inference"]["layers"]):
        assert [set(layer) for layer in layers] == [{"z", "a", "masked"}] * 3
    assert [layer["masked"] for layer in data["layers"]] == _rows(result, "masked")
    assert [layer["z"] for layer in data["inference"]["layers"]] == [[2, 1, 1], [2.5, 1],
                                                                     [2.25, 0.75]]
    assert data["output"] == [3, -2]
    assert data["inference"]["output"] == [2.25, 0.75]


def test_render_text_spells_out_each_unit() -> None:
    text = render_text(walkthrough(EXAMPLE_NET))
    assert "Inverted dropout" in text and "1/(1-p) = 2" in text
    assert "  mask = [1, 0, 1]" in text
    assert "  in   = a_in·mask·2 = [8, 0, 4]" in text
    assert "  z[0] = 0.5·8 + 1·0 + (-0.5)·4 + 1 = 3" in text
    assert "  a = relu(z) = [3, 0]" in text
    assert "  output = z = [3, -2]" in text
    assert "prediction: output = [2.25, 0.75], argmax = 0" in text
    classic = render_text(walkthrough(_net(scaling="none")))
    assert "Classic dropout" in classic and "  in   = a_in·0.5 = [0.5, 0.5]" in classic


def test_render_markdown_has_tables_per_layer() -> None:
    markdown = render_markdown(walkthrough(EXAMPLE_NET))
    assert markdown.count("### layers[") == 6  # 3 layers x 2 passes
    assert "| input | a_in | mask | in = a_in·mask·2 |" in markdown
    assert "| 1 | 1 | 0 | 0 |" in markdown  # layers[1], input 1 is dropped
    assert "| 1 | (-1)·8 + 2·0 + 1·4 + 0 | -4 | 0 |" in markdown
    assert "## Inference pass (no dropout)" in markdown


# ---------------------------------------------------------------- errors


def _layer(i: int, **changes: Any) -> dict[str, Any]:
    layers = copy.deepcopy(EXAMPLE_NET["layers"])
    layers[i].update(changes)
    return _net(layers=layers)


@pytest.mark.parametrize(
    ("net", "parts"),
    [
        (_net(x=[1, 1, 1]), ["layers[0].W has shape (3, 2)", "x has shape (3,)", "in = 3"]),
        (_layer(1, W=[[1, 1, 1, 1], [1, 1, 1, 1]]),
         ["layers[1].W has shape (2, 4)", "layers[0] outputs shape (3,)"]),
        (_layer(0, b=[0, 1]), ["layers[0].b has shape (2,)", "layers[0].W has shape (3, 2)"]),
        (_net(masks=[[1, 1], [1, 0], [1, 1]]),
         ["masks[1] has shape (2,)", "layers[1] takes 3 inputs", "must have shape (3,)"]),
        (_net(masks=[[1, 1, 1], [1, 0, 1], [1, 1]]),
         ["masks[0] has shape (3,)", "x has shape (2,)"]),
        (_net(masks=[[1, 1], [1, 0, 1]]), ["expected 3 masks", "got 2"]),
        (_net(masks=[[1, 1], [1, 0.5, 1], [1, 1]]), ["masks[1] must contain only 0 and 1"]),
        (_net(masks=[[1, 2], [1, 0, 1], [1, 1]]), ["masks[0] must contain only 0 and 1"]),
        (_net(p=0.0), ["masks[1] drops units but p = 0"]),
        (_layer(2, activation="softmax"), ["layers[2].activation", "relu", "'softmax'"]),
        (_net(p=1), ["p must be a number in [0, 1)", "1 - p = 0"]),
        (_net(p=1, scaling="none"), ["p must be a number in [0, 1), got 1"]),
        (_net(p=-0.1), ["p must be a number in [0, 1), got -0.1"]),
        (_net(p="0.5"), ["p must be a number in [0, 1), got '0.5'"]),
        (_net(scaling="classic"), ["scaling must be one of inverted, none", "'classic'"]),
        ({"x": [1], "layers": []}, ["missing key(s) masks, p"]),
        (_net(seed=3), ["unknown key(s) seed"]),
        (_layer(1, W=[[1, 1], [1, 1, 1]]), ["layers[1].W has rows of different lengths [2, 3]"]),
        (_layer(0, b=[0, "1", 0]), ["layers[0].b must be a non-empty vector"]),
        (_net(x=[]), ["x must be a non-empty vector"]),
        (_net(x=[1, float("nan")]), ["x must be a non-empty vector"]),
        (_net(layers=[], masks=[]), ["at least one layer"]),
        ([1, 2], ["the net must be a JSON object, got list"]),
    ],
)
def test_bad_nets_raise_one_line_errors(net: Any, parts: list[str]) -> None:
    with pytest.raises(ValueError) as info:
        walkthrough(net)
    message = str(info.value)
    assert "\n" not in message
    for part in parts:
        assert part in message


def test_missing_layer_key_names_the_layer() -> None:
    layers = copy.deepcopy(EXAMPLE_NET["layers"])
    del layers[1]["b"]
    with pytest.raises(ValueError, match=r"layers\[1\] is missing key\(s\) b"):
        parse_net(_net(layers=layers))


def test_load_net_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="net file not found: .*nope.json"):
        load_net(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"x": [1, 1],\n "layers": [}', encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad.json is not valid JSON: .*line 2, column"):
        load_net(bad)
    with pytest.raises(ValueError, match="cannot read net file"):
        load_net(tmp_path)


# ---------------------------------------------------------------- command line


@pytest.mark.parametrize("big", [1e308, -1e308])
def test_a_float64_overflow_is_a_stated_error_not_nan_outputs(big: float) -> None:
    net = _net(x=[big, big])
    with pytest.raises(ValueError, match=r"the (training|inference) pass overflows float64 at "
                       r"layers\[\d\]: its .* are not finite"):
        walkthrough(net)


def test_a_deeply_nested_net_file_is_one_line(tmp_path: Path) -> None:
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000, encoding="utf-8")
    with pytest.raises(ValueError, match="deep.json is nested too deeply to be a net"):
        load_net(deep)
