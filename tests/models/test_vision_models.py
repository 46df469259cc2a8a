"""The torchvision and timm models users already have: regularize, schedule, budget, train.

Each model is built with random weights (nothing is downloaded) and exercised on 32x32
images: sites land where asked, eval output is unchanged, ``state_dict`` keys are
unchanged (``strict=True`` loads), a second ``regularize`` adds nothing, the scheduler
ramps the sites, the budget counts them and ``unregularize`` restores. A training step
(finite loss and gradients) runs on three of them by default and on all under
``pytest -m slow``.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

import convdrop
from convdrop import DropRateScheduler, Rule, drop_budget, regularize, sites, unregularize

torchvision = pytest.importorskip("torchvision")
timm = pytest.importorskip("timm")

MODELS = {
    "torchvision:resnet18": lambda: torchvision.models.resnet18(num_classes=10),
    "torchvision:resnet50": lambda: torchvision.models.resnet50(num_classes=10),
    "torchvision:mobilenet_v3_small": lambda: torchvision.models.mobilenet_v3_small(
        num_classes=10),
    "torchvision:efficientnet_b0": lambda: torchvision.models.efficientnet_b0(num_classes=10),
    "torchvision:convnext_tiny": lambda: torchvision.models.convnext_tiny(num_classes=10),
    "torchvision:densenet121": lambda: torchvision.models.densenet121(num_classes=10),
    "torchvision:vgg11_bn": lambda: torchvision.models.vgg11_bn(num_classes=10),
    "timm:resnet50": lambda: timm.create_model("resnet50", num_classes=10),
    "timm:efficientnet_b0": lambda: timm.create_model("efficientnet_b0", num_classes=10),
    "timm:convnext_tiny": lambda: timm.create_model("convnext_tiny", num_classes=10),
    "timm:regnety_002": lambda: timm.create_model("regnety_002", num_classes=10),
}
RULE = Rule("dropblock", 0.2, block_size=3, match="*")


TRAINED_BY_DEFAULT = ("torchvision:resnet18", "timm:efficientnet_b0", "timm:regnety_002")


@pytest.mark.parametrize("name", sorted(MODELS))
def test_real_model_regularizes_schedules_and_budgets(name):
    torch.manual_seed(0)
    model = MODELS[name]().eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        before = model(x)
    state = model.state_dict()
    keys = list(state)
    regularize(model, RULE)
    added = [s for s in sites(model) if s.target is not None]
    assert added and all(s.kind == "dropblock" for s in added)
    assert not any(".se." in s.target or "fc1" in s.target.split(".")[-1] for s in added)
    assert list(model.state_dict()) == keys
    model.load_state_dict(state, strict=True)
    with torch.no_grad():
        assert torch.equal(model(x), before)  # eval: every site is the identity
    assert len(sites(regularize(model, RULE))) == len(sites(model))  # idempotent
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # their own stochastic depth / dropout: named, kept
        sched = DropRateScheduler(model, "linear", 4)
    sched.step(), sched.step()
    assert all(rate == pytest.approx(0.1) for rate in sched.rates().values())
    assert drop_budget(model, x)["total"] > 0
    unregularize(model)
    assert not [s for s in sites(model) if s.target is not None]
    assert list(model.state_dict()) == keys


@pytest.mark.parametrize("name", [
    name if name in TRAINED_BY_DEFAULT else pytest.param(name, marks=pytest.mark.slow)
    for name in sorted(MODELS)
])
def test_real_model_trains_with_its_sites(name):
    torch.manual_seed(0)
    model = regularize(MODELS[name](), RULE).train()
    x = torch.randn(2, 3, 32, 32)
    loss = nn.functional.cross_entropy(model(x), torch.tensor([1, 2]))
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.parametrize("name", ["torchvision:mobilenet_v3_small", "timm:regnety_002"])
def test_real_model_under_autocast_and_channels_last(name):
    torch.manual_seed(0)
    model = regularize(MODELS[name](), RULE).train().to(memory_format=torch.channels_last)
    x = torch.randn(2, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x)
    out.float().sum().backward()
    assert out.dtype == torch.bfloat16 and torch.isfinite(out.float()).all()


def test_foreign_regularizers_of_real_models_count():
    effnet = torchvision.models.efficientnet_b0()  # stochastic depth up to 0.2 by default
    kinds = {s.kind for s in sites(effnet)}
    assert kinds == {"stochastic_depth", "dropout"}
    sched = DropRateScheduler(effnet, "linear", 10, foreign=True)
    assert all(p == 0 for p in sched.rates().values())
    timm_model = timm.create_model("efficientnet_b0", drop_path_rate=0.2)
    assert {s.kind for s in sites(timm_model)} >= {"drop_path"}
    assert convdrop.drop_budget(timm_model, torch.randn(1, 3, 32, 32))["total"] > 0
