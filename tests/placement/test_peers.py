"""Peer DropBlocks are told apart by module and class name, and mapped to convdrop's layer."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import convdrop
from convdrop.placement import peers


def _named(module: str, name: str, bases: tuple[type, ...] = (nn.Module,), **body) -> type:
    """A class that looks like a peer's: same module path and name, no import of the peer."""
    return type(name, bases, {"__module__": module, **body})


class Identity(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def _package_layer(drop_prob: float, block_size: int) -> nn.Module:
    cls = _named("dropblock.dropblock", "DropBlock2D", (Identity,))
    layer = cls()
    layer.drop_prob, layer.block_size = drop_prob, block_size
    return layer


def test_classes_are_recognized_by_module_and_name_without_importing_them():
    layer = _package_layer(0.2, 5)
    peer = peers.identify(layer)
    assert (peer.source, peer.name, peer.overrides) == ("dropblock", "dropblock.DropBlock2D", ())
    made = peers.recipe(layer)
    assert (made.layer, made.p, made.block_size) == (convdrop.DropBlock2d, 0.2, 5)
    assert made.defaults == {"shared_channels": True}  # the package draws one mask per sample
    built = made.build({"shared_channels": False}, p=0.05)
    assert (built.p, built.shared_channels) == (0.05, False)
    # the same name from another package, convdrop's own layers and plain modules are not peers
    assert peers.identify(_named("mypkg.blocks", "DropBlock2D", (Identity,))()) is None
    assert peers.identify(convdrop.DropBlock2d(0.1, 3)) is None
    assert peers.identify(nn.Conv2d(1, 1, 1)) is None


def test_linear_scheduler_is_recognized_along_the_mro():
    wrapper = _named("dropblock.scheduler", "LinearScheduler", (Identity,))
    assert peers.is_linear_scheduler(wrapper())
    assert peers.is_linear_scheduler(_named("mine", "Ramp", (wrapper,))())
    assert not peers.is_linear_scheduler(_named("mine", "LinearScheduler", (Identity,))())


def test_a_subclass_that_redefines_methods_is_not_mapped():
    base = type(_package_layer(0.1, 3))
    plain = _named("mine", "MyBlock", (base,))()
    plain.drop_prob, plain.block_size = 0.1, 3
    assert peers.recipe(plain).p == 0.1  # a subclass that changes nothing maps like its base
    tuned = _named("mine", "Tuned", (base,), _compute_gamma=lambda self, x: 0.5)()
    tuned.drop_prob, tuned.block_size = 0.1, 3
    assert peers.identify(tuned).overrides == ("_compute_gamma",)
    with pytest.raises(ValueError, match="Tuned subclasses dropblock.DropBlock2D and redefines "
                                         "_compute_gamma"):
        peers.recipe(tuned)


@pytest.mark.parametrize(("drop_prob", "block_size", "words"), [
    (1.5, 3, "p must be a probability in \\[0, 1\\], got 1.5"),
    (0.1, 0, "block_size"),
    ("lots", 3, "drop_prob must be a number, got 'lots'"),
])
def test_a_bad_peer_setting_is_a_one_line_reason(drop_prob: object, block_size: int,
                                                 words: str):
    with pytest.raises(ValueError, match=words):
        peers.recipe(_package_layer(drop_prob, block_size))
