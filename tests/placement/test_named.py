"""Rules users can aim (exclude, squeeze-excitation, min_size) and named placements."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import convdrop
from convdrop import Rule, place, regularize, sites

torchvision = pytest.importorskip("torchvision")
timm = pytest.importorskip("timm")


def _conv_sites(model: nn.Module) -> list[str]:
    return [s.target for s in sites(model) if s.target is not None]


@pytest.mark.parametrize("build", [
    lambda: torchvision.models.efficientnet_b0(),
    lambda: timm.create_model("regnety_002"),
])
def test_default_rule_leaves_squeeze_excitation_convs_out(build):
    targets = _conv_sites(regularize(build(), Rule("dropblock", 0.1)))
    assert targets and not any(".se." in t or "fc1" in t or "fc2" in t for t in targets)
    with_se = _conv_sites(regularize(build(), Rule("dropblock", 0.1, include_se=True)))
    assert len(with_se) > len(targets)  # 32 (efficientnet_b0) / 26 (regnety_002) more


def test_exclude_and_min_size_narrow_a_rule():
    model = torchvision.models.resnet18()
    regularize(model, Rule("dropblock", 0.1, match="layer4.*", exclude=("*.downsample.*",
                                                                         "layer4.1.*")))
    assert _conv_sites(model) == ["layer4.0.conv1", "layer4.0.conv2"]
    small = torchvision.models.resnet18()
    x = torch.randn(1, 3, 64, 64)  # layer4 sees 2x2 maps, layer3 4x4
    regularize(small, Rule("dropblock", 0.1, match="layer[34].*", min_size=3), example_input=x)
    assert _conv_sites(small) and all(t.startswith("layer3") for t in _conv_sites(small))
    with pytest.raises(ValueError, match="smaller than min_size"):
        regularize(torchvision.models.resnet18(), Rule("dropblock", 0.1, match="layer4.*",
                                                       min_size=3), example_input=x)


def test_after_bn_and_stage_outputs_report_where_they_landed():
    x = torch.randn(1, 3, 64, 64)
    report = place(torchvision.models.resnet18(), "after_bn", 0.1, match="layer4.*",
                   example_input=x)
    assert len(report.sites) == 5 and report.sites[0].target == "layer4.0.bn1"
    assert report.sites[0].map_shape == (1, 512, 2, 2)
    assert "after_bn: 5 sites" in str(report) and "map (2, 2)" in str(report)
    stages = place(timm.create_model("convnext_atto"), "stage_outputs", 0.1, example_input=x)
    assert [s.target for s in stages.sites] == ["stages.0", "stages.1", "stages.2", "stages.3"]
    effnet = place(torchvision.models.efficientnet_b0(), "after_conv", 0.1)
    assert effnet.left_out["squeeze-excitation"] == 32


def test_named_placements_refuse_clearly():
    with pytest.raises(ValueError, match="ConvNeXt has no BatchNorm2d.*'after_conv'"):
        place(timm.create_model("convnext_atto"), "after_bn", 0.1)
    with pytest.raises(ValueError, match="needs example_input"):
        place(torchvision.models.resnet18(), "stage_outputs", 0.1)
    with pytest.raises(ValueError, match="placement must be one of"):
        place(torchvision.models.resnet18(), "everywhere", 0.1)


def test_paper_resnet_points_torchvision_users_to_the_zoo():
    with pytest.raises(ValueError) as err:
        place(torchvision.models.resnet50(), "paper_resnet", 0.1)
    assert "7 identity shortcuts" in str(err.value)
    assert "convdrop.models.create('resnet50', dropblock=p)" in str(err.value)
    assert "strict=True" in str(err.value)


class _Block(nn.Module):
    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(c_in, c_out, 3, 2, 1), nn.BatchNorm2d(c_out)
        self.conv2, self.bn2 = nn.Conv2d(c_out, c_out, 3, 1, 1), nn.BatchNorm2d(c_out)
        self.downsample = nn.Conv2d(c_in, c_out, 1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
        return torch.relu(out + self.downsample(x))


def test_paper_resnet_places_every_site_where_shortcuts_are_reachable():
    model = nn.Sequential(nn.Sequential(_Block(3, 4)), nn.Sequential(_Block(4, 8)),
                          nn.Sequential(_Block(8, 8)))
    report = place(model, "paper_resnet", 0.2)
    rates = {s.target: s.p for s in report.sites}
    assert rates == pytest.approx({"1.0.bn1": 0.05, "1.0.bn2": 0.05, "1.0.downsample": 0.05,
                                   "2.0.bn1": 0.2, "2.0.bn2": 0.2, "2.0.downsample": 0.2})


def test_the_paper_sites_on_a_torchvision_checkpoint():
    tv = torchvision.models.resnet50().eval()
    model = convdrop.models.create("resnet50", 1000, dropblock=0.1)
    model.load_state_dict(tv.state_dict(), strict=True)
    model.eval()
    x = torch.randn(1, 3, 64, 64)
    assert torch.allclose(model(x), tv(x), atol=1e-5)
    drops = [s for s in sites(model) if s.kind == "dropblock"]
    assert len(drops) == 36 and {s.p for s in drops} == {0.025, 0.1}
