"""torch.fx and TorchScript on layers, zoo models and regularized models."""

from __future__ import annotations

import pytest
import torch
import torch.fx
from torch import nn

import convdrop
from convdrop import Rule, regularize, unregularize
from convdrop.placement.attach import TorchScriptSiteError


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.stage = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.ReLU())
        self.fc = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stage(torch.relu(self.bn(self.conv(x))))
        return self.fc(x.mean((2, 3)))


def _regularized() -> nn.Module:
    torch.manual_seed(0)
    return regularize(Net(), [
        Rule("dropblock", 0.3, block_size=3, match="conv"),                        # a leaf
        Rule("spatial_dropout", 0.2, match="stage", types=(nn.Sequential,)),      # a container
        Rule("dropout", 0.5, types=(nn.Linear,), position="before"),              # before a leaf
    ])


def _called(graph_module: torch.fx.GraphModule) -> list[str]:
    return [n.target for n in graph_module.graph.nodes if n.op == "call_module"]


def test_fx_traces_leaf_and_container_sites_as_nodes():
    model = _regularized()
    traced = torch.fx.symbolic_trace(model)
    called = _called(traced)
    for site in ("conv.dropblock", "stage_spatial_dropout", "fc.pre_dropout"):
        assert site in called
    assert traced.get_submodule("conv.dropblock") is model.conv.dropblock  # p stays live
    x = torch.randn(4, 3, 8, 8)
    model.eval(), traced.eval()
    assert torch.equal(traced(x), model(x))
    traced.train()
    torch.manual_seed(1)
    a = traced(x)
    torch.manual_seed(1)
    model.train()
    assert torch.equal(a, model(x))  # the same ops in the same order


def test_fx_traces_zoo_models_and_unregularize_restores_leaves():
    traced = torch.fx.symbolic_trace(convdrop.models.create("resnet18_cifar", dropblock=0.1))
    blocks = [t for t in _called(traced)
              if isinstance(traced.get_submodule(t), convdrop.DropBlock2d)]
    assert len(blocks) == 12  # the built-in DropBlock sites of groups 3 and 4
    model = _regularized()
    unregularize(model)
    assert "conv" in _called(torch.fx.symbolic_trace(model))  # the conv is a leaf again


SCRIPT_DEPRECATED = "ignore:`torch.jit.script` is deprecated:FutureWarning"


@pytest.mark.filterwarnings(SCRIPT_DEPRECATED)
@pytest.mark.parametrize("layer", [
    convdrop.DropBlock2d(0.1, 3), convdrop.Dropout(0.2), convdrop.SpatialDropout(0.2),
    convdrop.DropPath(0.1), convdrop.Cutout(3),
])
def test_layers_script_for_inference_and_refuse_training(layer):
    scripted = torch.jit.script(layer.eval())
    x = torch.randn(2, 3, 8, 8)
    assert torch.equal(scripted(x), x)
    scripted.train()
    with pytest.raises(Exception, match="eval mode only"):
        scripted(x)


@pytest.mark.filterwarnings(SCRIPT_DEPRECATED)
def test_a_zoo_model_scripts_and_a_regularized_one_is_refused_clearly():
    model = convdrop.models.create("resnet18_cifar", dropblock=0.1).eval()
    x = torch.randn(1, 3, 32, 32)
    assert torch.allclose(torch.jit.script(model)(x), model(x))
    regularized = _regularized().eval()
    with pytest.raises(TorchScriptSiteError, match=r"unregularize\(model\) before scripting"):
        torch.jit.script(regularized)
    expected = regularized(x[:, :, :8, :8])
    unregularize(regularized)
    assert torch.equal(torch.jit.script(regularized)(x[:, :, :8, :8]), expected)


def test_compile_still_runs_a_regularized_model_with_fx_marks():
    model = _regularized().train()
    out = torch.compile(model, backend="eager")(torch.randn(2, 3, 8, 8))
    assert out.shape == (2, 2)
