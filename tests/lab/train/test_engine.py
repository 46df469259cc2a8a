"""Tests for convdrop.lab.train.engine: learning, evaluation, schedules, augmentation and errors."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from convdrop._devices import resolve_device
from convdrop.lab.train.engine import (
    Augment,
    EpochStats,
    NonFiniteLossError,
    evaluate,
    make_grad_scaler,
    make_loader,
    make_loss,
    make_lr_scheduler,
    make_optimizer,
    seed_everything,
    train_one_epoch,
)

from conftest import gen

CPU = torch.device("cpu")



def tiny_cnn(classes: int = 2) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(32, classes),
    )


def bars_dataset(n: int = 128, seed: int = 0) -> TensorDataset:
    """Class 0: a bright horizontal bar, class 1: a vertical bar, on 8x8 noise."""
    g = gen(seed)
    images = 0.3 * torch.rand(n, 1, 8, 8, generator=g)
    labels = torch.arange(n) % 2
    where = torch.randint(1, 7, (n,), generator=g)
    for i in range(n):
        if labels[i] == 0:
            images[i, 0, where[i], :] += 1.0
        else:
            images[i, 0, :, where[i]] += 1.0
    return TensorDataset(images, labels)


class ConstantModel(nn.Module):
    """Returns fixed logits per call, for hand-checked accuracy and NaN losses."""

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.logits = logits
        self.weight = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits[: x.shape[0]] + self.weight


class CountingScheduler:
    def __init__(self) -> None:
        self.calls = 0

    def step(self) -> None:
        self.calls += 1


# ---------------------------------------------------------------- training


def test_tiny_cnn_learns():
    """Seeded: the mean epoch loss falls by > 40 % over 4 epochs and ends > 90 % accurate.

    On this separable toy task the drop is ~0.68 -> ~0.07; 40 % leaves a wide margin
    for platform differences while failing if the optimizer or the loop does nothing.
    """
    torch.manual_seed(0)
    model, data = tiny_cnn(), bars_dataset()
    optimizer = make_optimizer(model, "sgd", lr=0.1, weight_decay=0.0, nesterov=True)
    loader = make_loader(data, 16, shuffle=True, generator=gen(1))
    loss_fn = make_loss(0.0)
    epochs = [train_one_epoch(model, loader, optimizer, loss_fn=loss_fn, device=CPU,
                              augment=Augment(crop_pad=1, flip=False), generator=gen(2))
              for _ in range(4)]
    assert epochs[-1].loss < 0.6 * epochs[0].loss
    assert evaluate(model, loader, loss_fn=loss_fn, device=CPU).accuracy > 0.9
    assert isinstance(epochs[0], EpochStats) and epochs[0].steps == 8 and epochs[0].seconds > 0


def test_training_is_reproducible_with_seeds():
    def run() -> float:
        seed_everything(3)
        model = tiny_cnn()
        optimizer = make_optimizer(model, "adamw", lr=1e-2, weight_decay=1e-4)
        loader = make_loader(bars_dataset(32), 8, shuffle=True, generator=gen(1))
        return train_one_epoch(model, loader, optimizer, loss_fn=make_loss(0.1), device=CPU,
                               augment=Augment(cutout=3), generator=gen(2)).loss

    assert run() == run()


def test_schedulers_and_progress_step_once_per_batch():
    model = tiny_cnn()
    optimizer = make_optimizer(model, "sgd", lr=0.1, weight_decay=0.0)
    lr_scheduler = make_lr_scheduler(optimizer, "step", total_steps=10, step_size=3)
    drop, seen = CountingScheduler(), []
    loader = make_loader(bars_dataset(40), 8, shuffle=False)  # 5 batches
    train_one_epoch(model, loader, optimizer, loss_fn=make_loss(), device=CPU,
                    lr_scheduler=lr_scheduler, drop_scheduler=drop,
                    progress=lambda i, n: seen.append((i, n)))
    assert drop.calls == 5
    assert lr_scheduler.last_epoch == 5
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.1 * 0.1)  # 5 // 3 == 1 decay
    assert seen == [(i, 5) for i in range(5)]


def test_nan_loss_raises_before_the_update():
    model = ConstantModel(torch.full((8, 2), math.nan))
    optimizer = make_optimizer(model, "sgd", lr=0.1, weight_decay=0.0)
    loader = make_loader(bars_dataset(16), 8, shuffle=False)
    with pytest.raises(NonFiniteLossError, match=r"nan at epoch 7, step 1 of 2") as info:
        train_one_epoch(model, loader, optimizer, loss_fn=make_loss(), device=CPU, epoch=7)
    assert isinstance(info.value, RuntimeError) and info.value.epoch == 7
    assert model.weight.item() == 0.0


def test_inf_loss_raises():
    logits = torch.tensor([[math.inf, -math.inf]]).repeat(8, 1)
    model = ConstantModel(logits)
    optimizer = make_optimizer(model, "sgd", lr=0.1, weight_decay=0.0)
    loader = make_loader(bars_dataset(8), 8, shuffle=False)
    with pytest.raises(NonFiniteLossError, match="non-finite training loss"):
        train_one_epoch(model, loader, optimizer, loss_fn=make_loss(), device=CPU)


def test_channels_last_trains_and_evaluates():
    model = tiny_cnn()
    optimizer = make_optimizer(model, "sgd", lr=0.05, weight_decay=5e-4)
    loader = make_loader(bars_dataset(16), 8, shuffle=False)
    stats = train_one_epoch(model, loader, optimizer, loss_fn=make_loss(), device=CPU,
                            channels_last=True)
    assert model[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert math.isfinite(stats.loss)
    assert 0 <= evaluate(model, loader, loss_fn=make_loss(), device=CPU,
                         channels_last=True).accuracy <= 1


def test_amp_is_a_no_op_on_cpu():
    assert make_grad_scaler(CPU, torch.float16) is None
    with pytest.raises(ValueError, match="amp_dtype.*float32"):
        make_grad_scaler(CPU, torch.float32)


# ---------------------------------------------------------------- evaluation


@pytest.mark.parametrize("was_training", [True, False])
def test_evaluate_is_exact_and_restores_mode(was_training):
    # Predictions: classes 0, 1, 1, 0 against labels 0, 1, 0, 0 -> 3 of 4 right.
    logits = torch.tensor([[2.0, 0.0], [0.0, 2.0], [0.0, 2.0], [2.0, 0.0]])
    labels = torch.tensor([0, 1, 0, 0])
    model = ConstantModel(logits)
    model.train(was_training)
    loader = make_loader(TensorDataset(torch.zeros(4, 1, 2, 2), labels), 4, shuffle=False)
    stats = evaluate(model, loader, loss_fn=make_loss(), device=CPU)
    assert stats.accuracy == 0.75
    expected = nn.functional.cross_entropy(logits, labels).item()
    assert stats.loss == pytest.approx(expected, rel=1e-6)
    assert model.training is was_training


def test_evaluate_runs_in_eval_mode_without_grad():
    modes = []

    class Probe(ConstantModel):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            modes.append((self.training, torch.is_inference_mode_enabled()))
            return super().forward(x)

    model = Probe(torch.zeros(2, 3))
    loader = make_loader(TensorDataset(torch.zeros(2, 1, 2, 2), torch.zeros(2).long()), 2,
                         shuffle=False)
    evaluate(model, loader, loss_fn=make_loss(), device=CPU)
    assert modes == [(False, True)] and model.training


# ---------------------------------------------------------------- LR schedules


def lrs(name: str, total: int, **kwargs) -> list[float]:
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = make_lr_scheduler(optimizer, name, total, **kwargs)
    values = []
    for _ in range(total):
        values.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return values


def test_cosine_schedule_values():
    assert lrs("cosine", 4) == pytest.approx([1.0, 0.853553, 0.5, 0.146447], abs=1e-6)


def test_step_schedule_values():
    assert lrs("step", 6, step_size=2, gamma=0.5) == pytest.approx([1, 1, .5, .5, .25, .25])
    assert lrs("step", 6) == pytest.approx([1, 1, 0.1, 0.1, 0.01, 0.01])  # default: T / 3


def test_constant_schedule_and_state_dict_round_trip():
    assert lrs("none", 3) == [1.0, 1.0, 1.0]
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = make_lr_scheduler(optimizer, "cosine", 10)
    for _ in range(4):
        optimizer.step()
        scheduler.step()
    fresh = make_lr_scheduler(torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0),
                              "cosine", 10)
    fresh.load_state_dict(scheduler.state_dict())
    assert fresh.last_epoch == 4


# ---------------------------------------------------------------- augmentation


def test_augment_identity_and_no_mutation():
    images = torch.rand(4, 3, 6, 6, generator=gen())
    before = images.clone()
    out = Augment(crop_pad=0, flip=False, cutout=0)(images, gen())
    assert torch.equal(out, before) and torch.equal(images, before)
    Augment(crop_pad=2, flip=True, cutout=2)(images, gen())
    assert torch.equal(images, before)


@pytest.mark.parametrize("augment", [Augment(), Augment(crop_pad=2, cutout=3), Augment(flip=False)])
def test_augment_shape_dtype_and_determinism(augment):
    images = torch.rand(5, 3, 8, 8, generator=gen(), dtype=torch.float64)
    first, second = augment(images, gen(7)), augment(images, gen(7))
    assert first.shape == images.shape and first.dtype == images.dtype
    assert torch.equal(first, second)
    assert not torch.equal(first, augment(images, gen(8)))


def test_crop_shifts_content_by_the_drawn_offset():
    """Every crop is the image shifted by (dy, dx) in [-pad, pad] with zeros filled in."""
    pad = 2
    images = torch.arange(1, 1 + 3 * 36, dtype=torch.float32).view(3, 1, 6, 6)
    out = Augment(crop_pad=pad, flip=False)(images, gen(4))
    padded = nn.functional.pad(images, (pad,) * 4)
    shifts = set()
    for i in range(3):
        matches = [(dy, dx) for dy in range(2 * pad + 1) for dx in range(2 * pad + 1)
                   if torch.equal(out[i], padded[i, :, dy:dy + 6, dx:dx + 6])]
        assert len(matches) == 1
        shifts.add(matches[0])
    assert shifts != {(pad, pad)}  # seeded: not every image left in place


def test_flip_mirrors_about_half():
    """Each image is itself or its mirror; with seed 0, 64 images flip 20-44 times (> 3 s.d.)."""
    images = torch.rand(64, 1, 4, 4, generator=gen())
    out = Augment(crop_pad=0, flip=True)(images, gen(0))
    flipped = [torch.equal(o, i.flip(-1)) for o, i in zip(out, images)]
    kept = [torch.equal(o, i) for o, i in zip(out, images)]
    assert all(f != k for f, k in zip(flipped, kept))
    assert 20 <= sum(flipped) <= 44


def test_cutout_zeroes_one_patch_per_image():
    images = torch.ones(6, 2, 10, 10)
    out = Augment(crop_pad=0, flip=False, cutout=4)(images, gen(3))
    zeros = (out == 0).all(dim=1).sum(dim=(1, 2))  # (N,) pixels cut, same in every channel
    assert ((zeros > 0) & (zeros <= 16)).all()


@pytest.mark.parametrize("kwargs", [{"crop_pad": -1}, {"cutout": 1.5}, {"crop_pad": True}])
def test_augment_rejects_bad_settings(kwargs):
    name = next(iter(kwargs))
    with pytest.raises(ValueError, match=f"Augment.{name} must be an int >= 0"):
        Augment(**kwargs)


def test_augment_rejects_bad_images():
    with pytest.raises(ValueError, match="images must have 4"):
        Augment()(torch.zeros(3, 8, 8))


# ---------------------------------------------------------------- factories and errors


def test_resolve_device():
    assert resolve_device("cpu") == CPU
    assert resolve_device("auto").type in ("cpu", "cuda", "mps")
    for bad in ("tpu", "", "cuda:x"):
        with pytest.raises(ValueError, match=f"device must be .* got {bad!r}"):
            resolve_device(bad)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_resolve_device_unavailable():
    with pytest.raises(ValueError, match="'cuda' is not available"):
        resolve_device("cuda")


def test_seed_everything_seeds_all_sources_and_returns_a_generator():
    def draws() -> tuple:
        g = seed_everything(5)
        return (torch.rand(2, generator=g).tolist(), torch.rand(2).tolist(),
                np.random.rand(2).tolist(), random.random())

    first = draws()
    assert first == draws()
    assert first[0] != first[1]  # the generator is separate from the global stream
    with pytest.raises(ValueError, match="seed must be an int in .* got -1"):
        seed_everything(-1)


def test_make_optimizer():
    model = tiny_cnn()
    sgd = make_optimizer(model, "sgd", 0.1, 5e-4, momentum=0.8, nesterov=True)
    assert isinstance(sgd, torch.optim.SGD)
    assert sgd.param_groups[0]["nesterov"] and sgd.param_groups[0]["momentum"] == 0.8
    assert isinstance(make_optimizer(model, "adamw", 1e-3, 0.05), torch.optim.AdamW)


@pytest.mark.parametrize("args,match", [
    (("adam", 0.1, 0.0), "optimizer must be one of .* got 'adam'"),
    (("sgd", 0.0, 0.0), "lr must be .* got 0.0"),
    (("sgd", 0.1, -1.0), "weight_decay must be .* got -1.0"),
    (("sgd", 0.1, 0.0, 1.0), "momentum must be .* got 1.0"),
    (("sgd", True, 0.0), "lr must be a finite number > 0, got True"),
    (("sgd", 0.1, math.inf), "weight_decay must be a finite number >= 0, got inf"),
])
def test_make_optimizer_errors(args, match):
    with pytest.raises(ValueError, match=match):
        make_optimizer(tiny_cnn(), *args)


def test_make_optimizer_nesterov_needs_momentum():
    with pytest.raises(ValueError, match=r"momentum must be in \[0, 1\) \(> 0 with nesterov\), "
                                         r"got 0.0"):
        make_optimizer(tiny_cnn(), "sgd", 0.1, 0.0, 0.0, nesterov=True)
    assert make_optimizer(tiny_cnn(), "sgd", 0.1, 0.0, 0.0).param_groups[0]["momentum"] == 0.0


def test_factory_errors():
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    with pytest.raises(ValueError, match="lr schedule must be one of .* got 'linear'"):
        make_lr_scheduler(optimizer, "linear", 10)
    with pytest.raises(ValueError, match="total_steps must be an int >= 1, got 0"):
        make_lr_scheduler(optimizer, "cosine", 0)
    with pytest.raises(ValueError, match="step_size must be an int >= 1, got 0"):
        make_lr_scheduler(optimizer, "step", 10, step_size=0)
    with pytest.raises(ValueError, match=r"gamma must be in \(0, 1\], got 0"):
        make_lr_scheduler(optimizer, "step", 10, gamma=0)
    with pytest.raises(ValueError, match="label_smoothing must be .* got 1.5"):
        make_loss(1.5)
    data = bars_dataset(4)
    with pytest.raises(ValueError, match="shuffle must be False"):
        make_loader(data, 2, shuffle=True, sampler=torch.utils.data.SequentialSampler(data))
    with pytest.raises(ValueError, match="batch_size must be an int >= 1, got 0"):
        make_loader(data, 0, shuffle=False)


def test_make_loss_smooths_labels():
    logits, labels = torch.tensor([[3.0, 0.0]]), torch.tensor([0])
    assert make_loss(0.2)(logits, labels) > make_loss(0.0)(logits, labels)


def test_loader_shuffle_follows_generator():
    data = TensorDataset(torch.arange(20).float())
    order = [torch.cat([b[0] for b in make_loader(data, 5, shuffle=True, generator=gen(s))])
             for s in (1, 1, 2)]
    assert torch.equal(order[0], order[1]) and not torch.equal(order[0], order[2])
