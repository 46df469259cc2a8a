"""The thin modules: delegation, train/eval, settable p, repr, errors, compile."""

from __future__ import annotations

import copy
import pickle

import pytest
import torch

import convdrop
from convdrop import Cutout, DropBlock1d, DropBlock2d, DropBlock3d, Dropout, SpatialDropout

from conftest import gen

CASES = [
    (lambda g: DropBlock1d(0.2, 3, generator=g), (4, 3, 20)),
    (lambda g: DropBlock2d(0.2, 3, generator=g), (4, 3, 12, 12)),
    (lambda g: DropBlock3d(0.2, (2, 3, 3), generator=g), (2, 3, 6, 8, 8)),
    (lambda g: SpatialDropout(0.3, generator=g), (4, 8, 5, 5)),
    (lambda g: Dropout(0.3, generator=g), (4, 8, 5, 5)),
]


@pytest.mark.parametrize("make,shape", CASES)
def test_modules_drop_in_training_and_pass_through_in_eval(make, shape):
    layer = make(gen())
    x = torch.rand(shape) + 0.5
    y = layer(x)
    assert y.shape == x.shape and (y == 0).any() and not torch.equal(y, x)
    layer.eval()
    assert layer(x) is x
    assert len(layer.state_dict()) == 0  # no parameters or buffers: placement keeps keys


def test_drop_block_module_delegates_with_its_options():
    x = torch.rand(2, 4, 10, 10) + 0.5
    layer = DropBlock2d(0.2, 3, shared_channels=True, scale="expected", generator=gen(1))
    want = convdrop.drop_block(x, 0.2, 3, shared_channels=True, scale="expected",
                               generator=gen(1))
    assert torch.equal(layer(x), want)


def test_p_is_a_settable_attribute():
    layer = DropBlock2d(0.1, 3)
    layer.p = 0.0
    x = torch.randn(2, 3, 8, 8)
    assert layer(x) is x
    layer.p = 1.0
    assert torch.equal(layer(x), torch.zeros_like(x))


def test_extra_repr():
    assert repr(DropBlock2d(0.1, 7)) == "DropBlock2d(p=0.1, block_size=7)"
    text = repr(DropBlock3d(0.2, (1, 3, 3), shared_channels=True, calibrated=False,
                            scale="expected", inplace=True))
    assert "block_size=(1, 3, 3), shared_channels=True, calibrated=False" in text
    assert "scale='expected', inplace=True" in text
    assert repr(SpatialDropout(0.25)) == "SpatialDropout(p=0.25)"
    assert repr(Dropout(0.5)) == "Dropout(p=0.5)"
    assert repr(Cutout(8, count=2)) == "Cutout(size=8, count=2)"


@pytest.mark.parametrize("make,match", [
    (lambda: DropBlock2d(-0.1, 3), r"p must be a probability .* got -0.1"),
    (lambda: DropBlock2d(0.1, 0), r"block_size entries must be ints >= 1, got 0"),
    (lambda: DropBlock2d(0.1, (3, 3, 3)), r"tuple of 2 ints .* got \(3, 3, 3\)"),
    (lambda: DropBlock2d(0.1, 3, scale="max"), r"scale must be one of .* got 'max'"),
    (lambda: SpatialDropout(2), r"p must be a probability .* got 2"),
    (lambda: Cutout(0), r"^size entries must be ints >= 1, got 0"),
    (lambda: Cutout(4, count=0), r"count must be an int >= 1, got 0"),
])
def test_constructor_errors(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_wrong_rank_names_the_shape():
    with pytest.raises(ValueError, match=r"x must have 4 \(N, C, H, W\) dimensions, got shape"):
        DropBlock2d(0.1, 3)(torch.randn(2, 3, 8))


def test_cutout_module_only_in_training():
    layer = Cutout(4, generator=gen(2))
    images = torch.ones(3, 1, 10, 10)
    assert (layer(images) == 0).any()
    layer.eval()
    assert layer(images) is images


def test_modules_copy_and_pickle():
    for layer in (DropBlock2d(0.1, 3), SpatialDropout(0.1), Dropout(0.1), Cutout(3)):
        assert repr(copy.deepcopy(layer)) == repr(layer)
        assert repr(pickle.loads(pickle.dumps(layer))) == repr(layer)


@pytest.mark.parametrize("make,shape", CASES)
def test_torch_compile_smoke(make, shape):
    """Compiles (graph breaks at the sampler are fine) and runs at two batch sizes."""
    layer = make(None)
    compiled = torch.compile(torch.nn.Sequential(torch.nn.Identity(), layer), backend="eager")
    for n in (shape[0], shape[0] - 1):
        x = torch.rand((n, *shape[1:]), requires_grad=True)
        y = compiled(x)
        y.sum().backward()
        assert y.shape == x.shape and x.grad is not None


def test_p_is_checked_when_it_is_set():
    layer = convdrop.DropBlock2d(0.1, 3)
    with pytest.raises(ValueError, match=r"p must be a probability in \[0, 1\], got 2"):
        layer.p = 2
    assert layer.p == 0.1
    layer.p = 0.3
    assert layer.p == 0.3 and "p=0.3" in repr(layer)
    for other in (convdrop.SpatialDropout(0.2), convdrop.Dropout(0.2)):
        with pytest.raises(ValueError, match="p must be a probability"):
            other.p = -0.1


def test_drop_path_drops_whole_samples_and_rescales():
    x = torch.ones(64, 3, 4, 4)
    y = convdrop.drop_path(x, 0.25, generator=gen(0))
    per_sample = y.flatten(1)
    dropped = (per_sample == 0).all(1)
    assert torch.equal(dropped | (per_sample == 1 / 0.75).all(1), torch.ones(64, dtype=torch.bool))
    assert 4 <= int(dropped.sum()) <= 28  # Binomial(64, 0.25): mean 16, sd 3.5; > 3 sd each side
    assert torch.equal(y, convdrop.drop_path(x, 0.25, generator=gen(0)))  # seeded
    whole = convdrop.drop_path(x, 0.5, mode="batch", generator=gen(1))
    assert whole.unique().numel() == 1
    assert convdrop.drop_path(x, 0.3, training=False) is x
    with pytest.raises(ValueError, match="mode must be 'row' or 'batch', got 'col'"):
        convdrop.drop_path(x, 0.3, mode="col")


def test_drop_path_layer_is_a_scheduled_budgeted_site():
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), convdrop.DropPath(0.2))
    assert [(s.kind, s.p) for s in convdrop.sites(model)] == [("drop_path", 0.2)]
    budget = convdrop.drop_budget(model, torch.randn(1, 3, 6, 6))["total"]
    assert budget == pytest.approx(0.2)
    sched = convdrop.DropRateScheduler(model, "linear", 2)
    sched.step()
    assert model[1].p == pytest.approx(0.1) and "p=0.1" in repr(model[1])
    rule = convdrop.Rule("drop_path", 0.1, match="0")
    assert convdrop.sites(convdrop.regularize(torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3)),
                                              rule))[0].kind == "drop_path"
