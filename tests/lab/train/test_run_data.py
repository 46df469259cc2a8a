"""A run's loaders: the training images scored each epoch for the learning curve, and that
scoring leaves the global random stream, so every other number of a run, untouched."""

from __future__ import annotations

import torch
from torch.utils.data import Subset, TensorDataset

from convdrop.lab.spec.experiment import build_spec
from convdrop.lab.train import distributed as dd
from convdrop.lab.train.run_data import curve_subset, load_run_data, make_loaders


def test_the_curve_subset_is_the_whole_split_or_evenly_spaced_images():
    small = TensorDataset(torch.arange(10))
    assert curve_subset(small, limit=10) is small
    picked = curve_subset(TensorDataset(torch.arange(100)), limit=5)
    assert isinstance(picked, Subset) and list(picked.indices) == [0, 25, 50, 74, 99]


def test_scoring_the_curve_images_does_not_touch_the_global_random_stream():
    spec = build_spec(overrides={"data": "synthetic", "train_size": 30, "methods": ["control"],
                                 "workers": 1})
    data = load_run_data(spec, 0, keep=False)
    loaders, _ = make_loaders(data, spec, dd.Dist(device="cpu"), torch.Generator(), 0)
    assert len(loaders["train_curve"].dataset) == 30
    before = torch.get_rng_state()
    assert sum(len(labels) for _, labels in loaders["train_curve"]) == 30
    assert torch.equal(before, torch.get_rng_state())
    for _ in loaders["val"]:  # the other evaluation loaders draw from it, as they always did
        pass
    assert not torch.equal(before, torch.get_rng_state())
