"""replace_dropblocks: torchvision's, timm's and the dropblock package's layers become
convdrop's, with the same eval output, state_dict keys and nominal rate, and the package's
LinearScheduler becomes a DropRateScheduler with its exact ramp."""

from __future__ import annotations

import io
import sys
import warnings
from collections.abc import Callable

import pytest
import torch
from torch import nn

import convdrop
from convdrop.errors import ArgumentError, UserError
from convdrop.placement.replace import PeerNotInstalledError

from conftest import gen


def tv(name: str) -> Callable[..., nn.Module]:
    return getattr(pytest.importorskip("torchvision.ops"), name)


def timm_block() -> Callable[..., nn.Module]:
    return pytest.importorskip("timm.layers").DropBlock2d


def package(name: str) -> Callable[..., nn.Module]:
    return getattr(pytest.importorskip("dropblock"), name)


class Net(nn.Module):
    """conv, BN, the peer layer, a linear head: (N, 3, *spatial) -> (N, 2)."""

    def __init__(self, peer: nn.Module, dims: int = 2) -> None:
        super().__init__()
        conv, bn = (nn.Conv2d, nn.BatchNorm2d) if dims == 2 else (nn.Conv3d, nn.BatchNorm3d)
        self.conv, self.bn, self.drop = conv(3, 4, 3, padding=1), bn(4), peer
        self.fc = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.drop(self.bn(self.conv(x))).flatten(2).mean(2))


# name -> (peer layer, dims, convdrop class, p, shared_channels); each at nominal rate 0.1
PEERS: dict[str, Callable[[], tuple[nn.Module, int, type, float, bool]]] = {
    "torchvision.DropBlock2d": lambda: (tv("DropBlock2d")(0.1, 3), 2, convdrop.DropBlock2d,
                                        0.1, False),
    "torchvision.DropBlock3d": lambda: (tv("DropBlock3d")(0.1, 3), 3, convdrop.DropBlock3d,
                                        0.1, False),
    "timm.DropBlock2d": lambda: (timm_block()(0.2, 3, gamma_scale=0.5), 2,
                                 convdrop.DropBlock2d, 0.1, True),
    "dropblock.DropBlock2D": lambda: (package("DropBlock2D")(0.1, 3), 2, convdrop.DropBlock2d,
                                      0.1, True),
    "dropblock.DropBlock3D": lambda: (package("DropBlock3D")(0.1, 3), 3, convdrop.DropBlock3d,
                                      0.1, True),
    "dropblock.LinearScheduler": lambda: (package("LinearScheduler")(
        package("DropBlock2D")(0.0, 3), start_value=0.0, stop_value=0.1, nr_steps=4), 2,
        convdrop.DropBlock2d, 0.0, True),
}


@pytest.mark.parametrize("name", sorted(PEERS))
def test_each_peer_keeps_eval_output_and_state_dict_keys(name: str):
    peer, dims, cls, p, shared = PEERS[name]()
    torch.manual_seed(0)
    model = Net(peer, dims)
    x = torch.randn(2, 3, *[6] * dims)
    before, keys = model.eval()(x), list(model.state_dict())
    replaced = convdrop.replace_dropblocks(model)
    assert replaced == ["drop"] and replaced.unmapped == {}
    assert type(model.drop) is cls and model.drop.block_size == 3
    assert model.drop.p == pytest.approx(p) and model.drop.shared_channels is shared
    assert list(model.state_dict()) == keys
    assert not model.drop.training  # the model's mode carries over
    assert torch.equal(model(x), before)
    model.train()(x).sum().backward()  # and it trains
    assert len(replaced.schedulers) == (name == "dropblock.LinearScheduler")


def _dropped(model: nn.Module, shape: tuple[int, ...]) -> float:
    """Fraction of a ones input that ``model`` (one DropBlock) zeroes in training."""
    return (model.train()(torch.ones(shape)) == 0).double().mean().item()


# At these sizes the dropped fraction's standard deviation is at most 0.0014 (measured over
# generator seeds 0-39 for every case below), so TOL is over 5 of them; the peers miss 0.1
# by more (the package: 0.066 small, 0.090 large; timm: 0.31 small).
TOL = 0.0075
MAPS = {"small": ((32768, 1, 7, 7), 5), "large": ((2048, 1, 56, 56), 7),
        "3d": ((8192, 1, 6, 6, 6), 3)}


@pytest.mark.parametrize(("source", "where"), [
    (source, where) for source in ("torchvision", "timm", "dropblock") for where in sorted(MAPS)
    if (source, where) != ("timm", "3d")  # timm has no 3d DropBlock
])
def test_training_drops_the_peers_nominal_rate(source: str, where: str):
    shape, block = MAPS[where]
    dims = len(shape) - 2
    make = {"torchvision": lambda: tv(f"DropBlock{dims}d")(0.1, block),
            "timm": lambda: timm_block()(0.1, block),
            "dropblock": lambda: package(f"DropBlock{dims}D")(0.1, block)}[source]
    peer = make().train()
    model = nn.Sequential(make())
    convdrop.replace_dropblocks(model, source=source, generator=gen(0))
    assert abs(_dropped(model, shape) - 0.1) < TOL
    if source == "dropblock" or (source == "timm" and where == "small"):
        with torch.random.fork_rng():  # the peers draw from the global generator
            torch.manual_seed(0)
            assert abs(_dropped(peer, shape) - 0.1) > TOL  # what they really drop


def _wrapper(start: float, stop: float, steps: int, initial: float = 0.0) -> nn.Module:
    return package("LinearScheduler")(package("DropBlock2D")(initial, 3), start_value=start,
                                      stop_value=stop, nr_steps=steps)


def _package_rates(wrapper: nn.Module, batches: int) -> list[float]:
    """The rate of each batch, the wrapper stepped at its start (the package's README)."""
    rates = []
    for _ in range(batches):
        wrapper.step()
        rates.append(float(wrapper.dropblock.drop_prob))
    return rates


def _our_rates(sched: convdrop.DropRateScheduler, batches: int) -> list[float]:
    """The rate of each batch, the scheduler stepped at its end (after the optimizer)."""
    rates = []
    for _ in range(batches):
        rates.append(sched.rates()["0"])
        sched.step()
    return rates


# Equal to the package's numpy float64 values up to a rounding of target * (value / target).
SAME = {"rel": 1e-12, "abs": 1e-15}


@pytest.mark.parametrize(("start", "stop", "steps", "initial", "stepped"), [
    (0.0, 0.25, 5, 0.0, 0),     # the package README's example
    (0.0, 0.1, 7, 0.1, 0),      # its resnet example: the layer is built at its full rate
    (0.3, 0.05, 4, 0.0, 0),     # a falling ramp
    (0.2, 0.2, 1, 0.0, 0),
    (0.0, 0.25, 6, 0.0, 3),     # a wrapper already stepped 3 times continues from there
    (0.0, 0.25, 6, 0.0, 9),
])
def test_each_batch_runs_at_the_rate_linear_scheduler_gave_it(
        start: float, stop: float, steps: int, initial: float, stepped: int):
    theirs, ours = _wrapper(start, stop, steps, initial), _wrapper(start, stop, steps, initial)
    for _ in range(stepped):
        theirs.step()
        ours.step()
    model = nn.Sequential(ours)
    sched = convdrop.replace_dropblocks(model).scheduler
    assert sched.step_count == stepped and type(model[0]) is convdrop.DropBlock2d
    for _ in range(3):  # forward, in train or eval mode, never steps
        model.train()(torch.randn(2, 1, 5, 5))
        model.eval()(torch.randn(2, 1, 5, 5))
    expected = _package_rates(theirs, steps + 3)
    assert _our_rates(sched, steps + 3) == pytest.approx(expected, **SAME)
    assert model[0].p == pytest.approx(stop, **SAME)  # the ramp's end holds


def test_the_ramp_resumes_from_a_state_dict():
    expected = _package_rates(_wrapper(0.0, 0.2, 8), 12)
    first = convdrop.replace_dropblocks(nn.Sequential(_wrapper(0.0, 0.2, 8))).scheduler
    assert _our_rates(first, 5) == pytest.approx(expected[:5], **SAME)
    buffer = io.BytesIO()
    torch.save({"drop": first.state_dict()}, buffer)
    buffer.seek(0)
    resumed = convdrop.replace_dropblocks(nn.Sequential(_wrapper(0.0, 0.2, 8))).scheduler
    assert resumed.rates()["0"] == 0.0  # a fresh model starts the ramp again ...
    resumed.load_state_dict(torch.load(buffer)["drop"])  # ... until its state is loaded
    assert resumed.step_count == 5
    assert _our_rates(resumed, 7) == pytest.approx(expected[5:], **SAME)


def test_a_ramp_of_no_steps_is_a_fixed_rate():
    model = nn.Sequential(_wrapper(0.0, 0.2, 0, initial=0.15))
    replaced = convdrop.replace_dropblocks(model)
    assert replaced == ["0"] and replaced.scheduler is None and model[0].p == 0.15


def test_wrappers_share_a_scheduler_by_ramp_and_a_shared_layer_stays_shared():
    model = nn.Module()
    model.a, model.b, model.c = _wrapper(0.0, 0.2, 4), _wrapper(0.0, 0.2, 4), _wrapper(0, 0.1, 4)
    model.d = model.a  # one instance at two paths
    replaced = convdrop.replace_dropblocks(model)
    assert replaced == ["a", "b", "c", "d"] and model.d is model.a
    assert [sorted(s.targets) for s in replaced.schedulers] == [["a", "b"], ["c"]]
    with pytest.raises(ValueError, match="2 different LinearScheduler ramps"):
        _ = replaced.scheduler


def _mixed() -> nn.Module:
    model = nn.Module()
    model.tv, model.timm = tv("DropBlock2d")(0.1, 3), timm_block()(0.1, 3)
    model.pkg, model.ramp = package("DropBlock2D")(0.1, 3), _wrapper(0.0, 0.1, 3)
    return model


@pytest.mark.parametrize(("source", "paths"), [
    ("any", ["tv", "timm", "pkg", "ramp"]), ("torchvision", ["tv"]), ("timm", ["timm"]),
    ("dropblock", ["pkg", "ramp"]),
])
def test_source_picks_one_peer(source: str, paths: list[str]):
    model = _mixed()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the rest is left alone quietly
        assert convdrop.replace_dropblocks(model, source=source) == paths
    assert [n for n, m in model.named_children() if isinstance(m, convdrop.DropBlock2d)] == paths


def test_a_timm_layer_in_a_linear_scheduler_is_named_not_swapped():
    for source, words in (("any", "LinearScheduler wraps DropBlock2d; only the dropblock "
                           "package's DropBlock2D/3D are mapped"),
                          ("timm", "wrapped by the dropblock package's LinearScheduler at "
                           "'ramp'; pass source='any' or 'dropblock'")):
        model = nn.Module()
        model.ramp = package("LinearScheduler")(timm_block()(0.1, 3), 0.0, 0.1, 3)
        with pytest.warns(UserWarning, match=words):
            assert convdrop.replace_dropblocks(model, source=source) == []
        assert type(model.ramp.dropblock) is timm_block()


def test_replace_timm_dropblocks_is_source_timm():
    model = _mixed()
    assert convdrop.replace_timm_dropblocks(model, couple_channels=False) == ["timm"]
    assert model.timm.shared_channels is False and type(model.tv) is not convdrop.DropBlock2d


def test_what_cannot_be_mapped_stays_and_is_named_in_one_line():
    model = _mixed()
    model.big, model.noisy = tv("DropBlock2d")(1.5, 3), timm_block()(0.1, 3, with_noise=True)
    model.odd = package("LinearScheduler")(nn.Identity(), 0.0, 0.1, 3)
    with pytest.warns(UserWarning) as caught:
        replaced = convdrop.replace_dropblocks(model)
    assert replaced == ["tv", "timm", "pkg", "ramp"]
    assert sorted(replaced.unmapped) == ["big", "noisy", "odd"]
    (message,) = [str(w.message) for w in caught]
    assert "\n" not in message and message.startswith("replace_dropblocks left 3 peer module")
    for words in ("big (DropBlock2d: p must be a probability in [0, 1], got 1.5)",
                  "with_noise must be False", "LinearScheduler wraps Identity"):
        assert words in message
    assert type(model.big).__module__.startswith("torchvision")


def test_bad_arguments_are_one_line_before_the_model_changes():
    model = _mixed()
    cases = [({"source": "dropblocks"}, "source must be one of 'any', 'torchvision', "
              "'dropblock', 'timm', got 'dropblocks'; did you mean 'dropblock'?"),
             ({"p": 0.2}, "options ['p'] are not convdrop DropBlock options"),
             ({"scale": "row"}, "options: scale must be"),
             ({"couple_channels": True, "shared_channels": False},
              "options: pass shared_channels or timm's couple_channels, not both")]
    for kwargs, words in cases:
        with pytest.raises(ArgumentError, match="^" + words.replace("[", r"\[").replace(
                "?", r"\?").replace("(", r"\(")):
            convdrop.replace_dropblocks(model, **kwargs)
    assert not any(isinstance(m, convdrop.DropBlock2d) for m in model.modules())


@pytest.mark.parametrize("source", ["torchvision", "timm", "dropblock"])
def test_source_naming_a_package_that_is_not_installed_is_one_line(
        source: str, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setitem(sys.modules, source, None)  # find_spec now says: not installed
    with pytest.raises(PeerNotInstalledError) as err:
        convdrop.replace_dropblocks(nn.Sequential(nn.Conv2d(1, 1, 1)), source=source)
    assert isinstance(err.value, UserError) and "\n" not in str(err.value)
    assert str(err.value).startswith(f"source={source!r} names a package that is not "
                                     f"installed")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "any" needs no peer installed
        assert convdrop.replace_dropblocks(nn.Sequential(convdrop.DropBlock2d(0.1, 3))) == []
