"""Tests for convdrop.models: registry, regularizer sites, and every model at small size."""

from __future__ import annotations

import copy
import functools

import pytest
import torch
from torch import nn

import convdrop
from convdrop import models
from convdrop.placement.budget import sites
from convdrop.placement.scheduler import DropRateScheduler

SMALL = {  # options that keep each model quick on two CPU cores
    "simple_cnn": {"width": 8},
    "resnet18_cifar": {},
    "resnet18": {},
    "resnet50": {},
    "wide_resnet": {"depth": 10, "widen_factor": 1},
}
REGULARIZED = {"dropblock": 0.2, "dropout": 0.1}
ONE_PER_BLOCK_TYPE = ["simple_cnn", "resnet18_cifar", "resnet50", "wide_resnet"]


@functools.cache
def _template(name: str, options: tuple) -> nn.Module:
    torch.manual_seed(0)
    return models.create(name, num_classes=7, in_channels=3, **SMALL[name], **dict(options))


def _model(name: str, **options: object) -> nn.Module:
    """A fresh copy of a seeded model (initializing ResNet-50 costs more than copying it)."""
    return copy.deepcopy(_template(name, tuple(sorted(options.items()))))


def _image(size: int, n: int = 2) -> torch.Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(0))


def test_registry_lists_the_zoo():
    assert models.names() == ["resnet18", "resnet18_cifar", "resnet50", "simple_cnn",
                              "wide_resnet"]
    assert models.options("wide_resnet") == {"depth": 16, "widen_factor": 4, "dropout": 0.0,
                                             "dropblock": 0.0, "block_size": 3}


@pytest.mark.parametrize("name", sorted(SMALL))
@pytest.mark.parametrize("options", [{}, REGULARIZED], ids=["plain", "regularized"])
def test_forward_backward_at_32x32(name, options):
    model = _model(name, **options).train()
    out = model(_image(32))
    out.square().mean().backward()
    assert out.shape == (2, 7) and torch.isfinite(out).all()
    assert all(p.grad is not None for p in model.parameters())
    stem = next(model.parameters())  # its gradient crossed the whole network
    assert stem.grad.abs().sum() > 0 and torch.isfinite(stem.grad).all()
    assert bool(sites(model)) == bool(options)  # rate 0 builds no regularizer at all


@pytest.mark.parametrize("name", ONE_PER_BLOCK_TYPE)
def test_regularizers_act_in_training_only(name):
    model = _model(name, dropblock=0.5, dropout=0.5)
    x = _image(16)
    model.eval()
    assert torch.equal(model(x), model(x))
    model.train()
    torch.manual_seed(1)
    first = model(x)
    torch.manual_seed(2)
    assert not torch.allclose(first, model(x))


@pytest.mark.parametrize("name", ONE_PER_BLOCK_TYPE)
def test_channels_last_matches_contiguous(name):
    """Same weights, eval mode: outputs agree to 1e-4 (conv kernels differ per layout)."""
    model = _model(name, **REGULARIZED).eval()
    x = _image(16)
    expected = model(x)
    fast = model.to(memory_format=torch.channels_last)
    got = fast(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
    fast.train()(x.contiguous(memory_format=torch.channels_last)).sum().backward()


@pytest.mark.parametrize("name", ["simple_cnn", "resnet18", "resnet50"])
def test_imagenet_size_inputs(name):
    model = _model(name, **REGULARIZED).eval()
    with torch.no_grad():
        assert model(_image(224, n=1)).shape == (1, 7)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["resnet18_cifar", "wide_resnet"])
def test_imagenet_size_inputs_for_cifar_stems(name):
    model = _model(name, **REGULARIZED)
    out = model(_image(224, n=1))
    out.sum().backward()
    assert out.shape == (1, 7)


def test_compiled_model_trains():
    model = _model("simple_cnn", variant="spatial_dropout", batchnorm=True, dropout=0.2)
    compiled = torch.compile(model, backend="eager")
    out = compiled(_image(32))
    out.sum().backward()
    assert out.shape == (2, 7) and torch.isfinite(model.stage1.conv1.weight.grad).all()


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SMALL))
def test_compiled_models_with_dropblock(name):
    """Dynamo traces into the DropBlock op (data-dependent sizes break the graph): slow.

    ``dynamic=False``: with symbolic sizes torch 2.13 cannot fake
    ``torch.rand(shape, generator=None)``, which convdrop's dropout ops call.
    """
    model = _model(name, **REGULARIZED)
    out = torch.compile(model, backend="eager", dynamic=False)(_image(32))
    out.sum().backward()
    assert out.shape == (2, 7)


# ---------------------------------------------------------------- placement inside models


def test_resnet_dropblock_sites_are_the_papers():
    model = _model("resnet50", dropblock=0.1)
    found = {s.path: s for s in sites(model)}
    assert all(p.startswith(("layer3.", "layer4.")) for p in found)
    assert len(found) == 4 * (6 + 3)  # drop1, drop2, drop3, drop_shortcut per block
    assert {p.rsplit(".", 1)[1] for p in found} == {"drop1", "drop2", "drop3", "drop_shortcut"}
    assert {found[p].p for p in found if p.startswith("layer3.")} == {0.025}
    assert {found[p].p for p in found if p.startswith("layer4.")} == {0.1}
    assert {s.block_size for s in found.values()} == {7}
    cifar = {s.path: s for s in sites(_model("resnet18_cifar", dropblock=0.1))}
    assert len(cifar) == 2 * 2 * 3 and {s.block_size for s in cifar.values()} == {3}


def test_resnet_state_dict_names_do_not_depend_on_regularizers():
    plain = _model("resnet18_cifar").state_dict()
    regularized = _model("resnet18_cifar", **REGULARIZED).state_dict()
    assert list(plain) == list(regularized)
    assert "layer2.0.downsample.0.weight" in plain and "fc.bias" in plain  # torchvision names
    assert len(_model("resnet50").state_dict()) == 320  # as torchvision's resnet50


def test_scheduler_ramps_the_resnet_targets_without_scaling_twice():
    model = _model("resnet18_cifar", dropblock=0.1)
    sched = DropRateScheduler(model, "linear", 4)
    assert set(sched.targets.values()) == {0.025, 0.1}
    sched.step()
    rates = sched.rates()
    assert rates["layer3.0.drop1"] == pytest.approx(0.025 / 4)
    assert rates["layer4.1.drop_shortcut"] == pytest.approx(0.1 / 4)


def test_wide_resnet_layout_and_size():
    model = _model("wide_resnet", dropout=0.3)
    assert [s.path for s in sites(model)] == ["layer1.0.dropout", "layer2.0.dropout",
                                              "layer3.0.dropout"]
    block = model.layer2[0]
    assert [n for n, _ in block.named_children()][:6] == ["bn1", "relu1", "conv1", "bn2",
                                                          "relu2", "dropout"]
    wrn = models.create("wide_resnet", 10, depth=28, widen_factor=10)
    assert 36.4e6 < sum(p.numel() for p in wrn.parameters()) < 36.6e6  # WRN-28-10: 36.5M
    assert {s.p for s in sites(_model("wide_resnet", dropblock=0.2))} == {0.05, 0.2}


@pytest.mark.parametrize(("variant", "between", "head_p", "has_bn"), [
    ("control", None, None, False),
    ("dropout", "dropout", None, False),
    ("batchnorm", None, None, True),
    ("head_dropout", None, 0.5, False),
    ("dropblock", "dropblock", None, False),
    ("spatial_dropout", "spatial_dropout", None, False),
])
def test_simple_cnn_variants(variant, between, head_p, has_bn):
    model = models.create("simple_cnn", 100, variant=variant)
    assert 100_000 <= sum(p.numel() for p in model.parameters()) <= 300_000
    kinds = {s.path: (s.kind, s.p) for s in sites(model)}
    conv_sites = {k: v for k, v in kinds.items() if k.startswith("stage")}
    assert {v for v in conv_sites.values()} == ({(between, 0.1)} if between else set())
    assert len(conv_sites) == (6 if between else 0)
    assert kinds.get("head.drop") == (("dropout", head_p) if head_p else None)
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == has_bn


def test_simple_cnn_options_override_the_variant():
    both = models.create("simple_cnn", variant="batchnorm", dropblock=0.2, block_size=5)
    assert isinstance(both.stage2.bn1, nn.BatchNorm2d)
    assert (both.stage2.drop1.p, both.stage2.drop1.block_size) == (0.2, 5)
    assert models.create("simple_cnn", variant="dropout", dropout=0.3).stage1.drop2.p == 0.3
    assert models.create("simple_cnn", variant="control", dropout=0.3).head.drop.p == 0.3
    assert models.create("simple_cnn", variant="dropblock", dropout=0.4).head.drop.p == 0.4
    unnormed = models.create("simple_cnn", variant="batchnorm", batchnorm=False)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in unnormed.modules())
    gray = models.create("simple_cnn", 3, in_channels=1, width=4)
    assert gray(torch.randn(1, 1, 16, 16)).shape == (1, 3)


@pytest.mark.parametrize(("call", "words"), [
    (lambda: models.create("vgg16"), ["'vgg16'", "resnet50", "simple_cnn"]),
    (lambda: models.create("resnet50", drop_block=0.1), ["drop_block", "dropblock"]),
    (lambda: models.create("simple_cnn", variant="bn"), ["variant", "'bn'", "batchnorm"]),
    (lambda: models.create("simple_cnn", variant="dropout", dropblock=0.1),
     ["dropblock=0.1", "conflicts"]),
    (lambda: models.create("simple_cnn", batchnorm="yes"), ["batchnorm", "'yes'"]),
    (lambda: models.create("resnet18_cifar", dropblock=1.5), ["dropblock", "1.5"]),
    (lambda: models.create("resnet50", block_size=0), ["block_size", "0"]),
    (lambda: models.create("wide_resnet", depth=15), ["depth", "6n + 4", "15"]),
    (lambda: models.create("wide_resnet", widen_factor=0), ["widen_factor", "0"]),
    (lambda: models.create("resnet18", num_classes=0), ["num_classes", "0"]),
])
def test_bad_names_and_options_are_value_errors(call, words):
    with pytest.raises(ValueError) as err:
        call()
    assert all(w in str(err.value) for w in words)


def test_models_are_reachable_from_the_package():
    assert convdrop.models.create is models.create
