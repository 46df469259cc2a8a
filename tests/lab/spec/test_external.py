"""--model torchvision:NAME / timm:NAME and --weights PATH in the runner's model construction."""

from __future__ import annotations

import socket
import sys

import pytest
import torch

from convdrop.cli import main
from convdrop.errors import MissingFileError, SpecError
from convdrop.lab.spec import external
from convdrop.lab.spec.experiment import build_spec
from convdrop.lab.spec.methods import build_recipe
from convdrop.placement import sites

pytest.importorskip("torchvision")
pytest.importorskip("timm")


def _spec(model: str, **more: object):
    return build_spec(overrides={"model": model, "methods": ["control", "dropblock_scheduled"],
                                 **more})


@pytest.mark.parametrize("model", ["torchvision:resnet18", "timm:resnet18"])
def test_methods_are_placed_by_rules_on_registry_models(model):
    recipe = build_recipe(_spec(model), "dropblock_scheduled", 10, 1)
    drops = [s for s in sites(recipe.model) if s.kind == "dropblock"]
    assert len(drops) == 20 and all(s.p == 0.1 for s in drops)  # after each of 20 convs
    out = recipe.model.eval()(torch.randn(2, 1, 16, 16))  # one channel, as the data has
    assert out.shape == (2, 10)
    sched = recipe.drop_scheduler(recipe.model, 10)
    assert sched.rates() and all(p == 0 for p in sched.rates().values())
    control = build_recipe(_spec(model), "control", 10, 1)
    assert not [s for s in sites(control.model) if s.kind == "dropblock"]


def test_weights_load_from_a_local_file_and_the_head_stays_fresh(tmp_path):
    torch.manual_seed(0)
    source = external.build("torchvision:resnet18", 1000, 3)  # an "ImageNet" checkpoint
    path = tmp_path / "resnet18.pt"
    torch.save({"state_dict": source.state_dict()}, path)
    recipe = build_recipe(_spec("torchvision:resnet18", weights=str(path)), "control", 10, 3)
    assert torch.equal(recipe.model.layer1[0].conv1.weight, source.layer1[0].conv1.weight)
    assert recipe.model.fc.weight.shape == (10, 512)
    assert external.load_weights(external.build("torchvision:resnet18", 10, 3), path) == [
        "fc.bias", "fc.weight"]


def test_bad_models_and_weights_are_one_line_errors(tmp_path):
    with pytest.raises(SpecError, match="torchvision:no_such_net.*list_models"):
        external.build("torchvision:no_such_net", 10, 3)
    with pytest.raises(SpecError, match="timm:no_such_net.*timm.list_models"):
        external.build("timm:no_such_net", 10, 3)
    with pytest.raises(MissingFileError, match="nope.pt"):
        build_recipe(_spec("timm:resnet18", weights=str(tmp_path / "nope.pt")), "control", 10, 3)
    torch.save({"conv9.weight": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(SpecError, match="missing keys.*unexpected keys \\['conv9.weight'\\]"):
        external.load_weights(external.build("timm:resnet18", 10, 3), tmp_path / "other.pt")
    assert not external.is_external("resnet18") and not external.is_external("timm:")


def test_a_missing_library_says_which_extra_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", None)  # as if timm were not installed
    with pytest.raises(SpecError, match=r"needs the 'vision' extra .*convdrop\[vision\]"):
        external.build("timm:resnet18", 10, 3)


@pytest.fixture
def no_network(monkeypatch):
    """The network unreachable: the Hub client offline, and every connection or name lookup
    fails loudly and is recorded (the test then checks that none was tried)."""
    tried: list[object] = []

    def refuse(*args: object, **kwargs: object) -> None:
        tried.append(args[1:] if args and isinstance(args[0], socket.socket) else args)
        raise OSError("the network is unreachable in this test")

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for name in ("connect", "connect_ex"):
        monkeypatch.setattr(socket.socket, name, refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    return tried


DOWNLOADING = {
    "timm:hf-hub:timm/resnet18.a1_in1k": "the 'hf-hub:' prefix makes timm fetch",
    "timm:hf_hub:timm/resnet18.a1_in1k": "the 'hf_hub:' prefix",
    "timm:local-dir:/tmp": "the 'local-dir:' prefix",
    "timm:timm/resnet18.a1_in1k": "a Hub id or a path, not a registry name",
}


@pytest.mark.parametrize("model", sorted(DOWNLOADING))
def test_a_name_that_would_download_is_refused_without_the_network(no_network, capsys, tmp_path,
                                                                    model):
    assert main(["compare", "--data", "synthetic", "--methods", "control", "--model", model,
                 "--epochs", "1", "--quiet", "--out", str(tmp_path / "out")]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and len(captured.err.strip().splitlines()) == 1
    assert DOWNLOADING[model] in captured.err and "never downloads" in captured.err
    with pytest.raises(SpecError, match="never downloads"):
        external.build(model, 10, 3)
    assert no_network == [] and not (tmp_path / "out").exists()  # nothing tried, or written


@pytest.mark.parametrize(("model", "option"), [
    ("timm:resnet18", "pretrained=true"), ("timm:resnet18", "pretrained_cfg_overlay=x"),
    ("timm:resnet18", "checkpoint_path=/tmp/x.pth"), ("torchvision:resnet18", "weights=DEFAULT"),
])
def test_an_option_that_would_download_is_refused_in_one_line(no_network, capsys, tmp_path,
                                                              model, option):
    assert main(["compare", "--data", "synthetic", "--methods", "control", "--model", model,
                 "--model-option", option, "--quiet", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    key = option.partition("=")[0]
    assert len(err.splitlines()) == 1 and f"model_options.{key}: an option that loads" in err
    assert no_network == []


def test_offline_options_of_the_libraries_still_build(no_network):
    model = external.build("torchvision:googlenet", 10, 3, init_weights=True, aux_logits=False)
    assert model.fc.out_features == 10 and no_network == []
