"""Regularizers of timm, torchvision and torch in sites, drop_budget and DropRateScheduler."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

import convdrop
from convdrop.placement import foreign
from convdrop.placement.scheduler import DropRateScheduler

timm_layers = pytest.importorskip("timm.layers")
tv_ops = pytest.importorskip("torchvision.ops")
timm = pytest.importorskip("timm")


class Mixed(nn.Module):
    """One regularizer of each library, on (N, 4, 8, 8) maps."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.timm_block = timm_layers.DropBlock2d(0.1, 7)
        self.timm_path = timm_layers.DropPath(0.2)
        self.depth = tv_ops.StochasticDepth(0.3, "row")
        self.tv_block = tv_ops.DropBlock2d(0.1, 3)
        self.torch_drop = nn.Dropout2d(0.05)
        self.ours = convdrop.DropBlock2d(0.1, 3)
        self.fc = nn.Linear(4 * 8 * 8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        for layer in (self.timm_block, self.timm_path, self.depth, self.tv_block,
                      self.torch_drop, self.ours):
            x = layer(x)
        return self.fc(x.flatten(1))


def test_sites_see_every_library_with_kind_source_and_rate():
    found = {s.path: (s.kind, s.source, s.p, s.block_size) for s in convdrop.sites(Mixed())}
    assert found == {
        "timm_block": ("dropblock", "timm", 0.1, 7),
        "timm_path": ("drop_path", "timm", 0.2, None),
        "depth": ("stochastic_depth", "torchvision", 0.3, None),
        "tv_block": ("dropblock", "torchvision", 0.1, 3),
        "torch_drop": ("spatial_dropout", "torch", 0.05, None),
        "ours": ("dropblock", "convdrop", 0.1, 3),
    }


def _sampled_fraction(layer: nn.Module, shape: tuple[int, ...], draws: int) -> float:
    torch.manual_seed(0)
    layer.train()
    x = torch.ones(shape)
    return sum(float((layer(x) == 0).float().mean()) for _ in range(draws)) / draws


@pytest.mark.parametrize(("layer", "shape", "expected"), [
    (timm_layers.DropBlock2d(0.1, 7), (16, 8, 7, 7), 0.93),  # seeds anywhere: far above 0.1
    (timm_layers.DropBlock2d(0.1, 5, gamma_scale=0.25), (16, 8, 14, 14), None),
    (tv_ops.DropBlock2d(0.1, 3), (16, 8, 14, 14), None),
])
def test_expected_fraction_is_the_real_drop_of_timm_and_torchvision(layer, shape, expected):
    exact = foreign.expected_fraction(layer, shape)
    if expected is not None:
        assert exact == pytest.approx(expected, abs=0.01)
    # 40 draws of 16x8 maps: the sampled mean's sd is < 0.004 here; 0.015 is > 3.5 sd
    assert _sampled_fraction(layer, shape, 40) == pytest.approx(exact, abs=0.015)


def test_budget_of_timm_resnet50_drop_block_rate_is_its_real_drop():
    model = timm.create_model("resnet50", drop_block_rate=0.1)
    budget = convdrop.drop_budget(model, torch.randn(1, 3, 224, 224))
    # by hand: 6 sites at 14x14 (block 5, gamma_scale 0.25) and 3 at 7x7 (block 3)
    assert budget["total"] == pytest.approx(0.0021, abs=0.0001)
    assert budget["layer3"] > 0 and budget["layer4"] > 0 and budget["layer1"] == 0


def test_scheduler_ramps_foreign_regularizers_when_asked():
    model = Mixed()
    sched = DropRateScheduler(model, "linear", 4, foreign=True)
    assert model.timm_block.drop_prob == 0.0 and model.depth.p == 0.0
    sched.step(), sched.step()
    assert model.timm_block.drop_prob == pytest.approx(0.05)
    assert model.timm_path.drop_prob == pytest.approx(0.1)
    assert model.depth.p == pytest.approx(0.15) and model.torch_drop.p == pytest.approx(0.025)
    assert sched.not_driven == {}


def test_scheduler_names_what_it_leaves_alone():
    model = Mixed()
    with pytest.warns(UserWarning, match="foreign=True") as caught:
        sched = DropRateScheduler(model, "linear", 4)
    assert "timm_block (DropBlock2d)" in str(caught[0].message)
    assert set(sched.not_driven) == {"timm_block", "timm_path", "depth", "tv_block",
                                     "torch_drop"}
    assert model.timm_block.drop_prob == 0.1 and model.ours.p == 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        DropRateScheduler(Mixed(), "linear", 4, foreign=False)  # said on purpose: quiet


def test_only_foreign_regularizers_point_to_the_option():
    model = timm.create_model("resnet18", drop_block_rate=0.1, drop_path_rate=0.1)
    with pytest.raises(ValueError, match="foreign=True") as err:
        DropRateScheduler(model, "linear", 10)
    assert "layer" in str(err.value) and "DropPath" in str(err.value)
    sched = DropRateScheduler(model, "linear", 10, foreign=True)
    assert len(sched.targets) == 8 + 3  # 8 DropPath (one per block), 3 DropBlock sites


def test_a_list_of_foreign_modules_needs_the_option():
    layer = timm_layers.DropPath(0.2)
    with pytest.raises(ValueError, match="foreign=True"):
        DropRateScheduler([layer], "linear", 2)
    DropRateScheduler([layer], "linear", 2, foreign=True).step()
    assert layer.drop_prob == pytest.approx(0.1)


def test_timm_drop_block_takes_timms_arguments_and_calibrates():
    layer = convdrop.timm_drop_block(drop_prob=0.1, block_size=5, gamma_scale=0.25, fast=True)
    assert isinstance(layer, convdrop.DropBlock2d)
    assert layer.p == pytest.approx(0.025) and layer.shared_channels and layer.block_size == 5
    per_channel = convdrop.timm_drop_block(0.1, 7, couple_channels=False)
    assert not per_channel.shared_channels
    bad_arguments = [({"with_noise": True}, "with_noise"), ({"scale_by_keep": False},
                     "scale_by_keep"), ({"colour": 1}, "colour"), ({"drop_prob": 2}, "drop_prob")]
    for bad, words in bad_arguments:
        with pytest.raises(ValueError, match=words):
            convdrop.timm_drop_block(**bad)


def test_replace_timm_dropblocks_keeps_sites_and_state_dict():
    model = timm.create_model("resnet18", drop_block_rate=0.1)
    keys = list(model.state_dict())
    swapped = convdrop.replace_timm_dropblocks(model, couple_channels=False)
    assert swapped == ["layer3.0.drop_block", "layer3.1.drop_block", "layer4.0.drop_block",
                       "layer4.1.drop_block"]
    assert list(model.state_dict()) == keys
    kinds = {s.path: (s.source, s.p) for s in convdrop.sites(model)}
    assert kinds["layer3.0.drop_block"] == ("convdrop", pytest.approx(0.025))
    assert kinds["layer4.0.drop_block"] == ("convdrop", pytest.approx(0.1))
    budget = convdrop.drop_budget(model, torch.randn(1, 3, 64, 64))["total"]
    assert 0 < budget < 0.1


def _package(name: str) -> type:
    return getattr(pytest.importorskip("dropblock"), name)


@pytest.mark.parametrize(("name", "p", "block", "shape"), [
    ("DropBlock2D", 0.1, 7, (64, 1, 7, 7)),  # the README's 0.055 at a nominal 0.1
    ("DropBlock2D", 0.2, 4, (64, 1, 8, 8)),  # an even block: the package crops its pool
    ("DropBlock2D", 0.1, 7, (64, 1, 3, 3)),  # a block larger than the map, never clipped
    ("DropBlock2D", 0.3, 5, (64, 1, 14, 14)),
    ("DropBlock3D", 0.1, 3, (64, 1, 6, 6, 6)),
])
def test_expected_fraction_is_the_real_drop_of_the_dropblock_package(name, p, block, shape):
    layer = _package(name)(drop_prob=p, block_size=block)
    exact = foreign.expected_fraction(layer, shape)
    assert exact < p  # the package's seed rate ignores where a block fits: it under-drops
    # 100 draws: the sampled mean's sd is at most 0.0023 on these maps (measured with
    # other seeds); 0.008 is > 3.4 sd
    assert _sampled_fraction(layer, shape, 100) == pytest.approx(exact, abs=0.008)


def test_the_dropblock_packages_layers_are_sites_in_the_budget_and_scheduled():
    layer = _package("DropBlock2D")(drop_prob=0.1, block_size=7)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), layer, nn.Flatten(),
                          nn.Linear(4 * 7 * 7, 2))
    x = torch.randn(1, 3, 7, 7)
    (site,) = convdrop.sites(model, x)
    assert (site.path, site.kind, site.source, site.p, site.block_size, site.map_shape) == (
        "1", "dropblock", "dropblock", 0.1, 7, (1, 4, 7, 7))
    budget = convdrop.drop_budget(model, x)
    assert budget["1"] == pytest.approx(foreign.expected_fraction(layer, (1, 4, 7, 7))
                                        * 4 * 49 / (4 * 49 + 2))
    sched = DropRateScheduler(model, "linear", 4, foreign=True)
    sched.step(), sched.step()
    assert layer.drop_prob == pytest.approx(0.05)
