"""convdrop.lab.runs.model_size: a model's training memory from its parameter count."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from convdrop.errors import SpecError
from convdrop.lab.runs import model_size


def test_training_bytes_count_weights_gradients_optimizer_state_and_buffers():
    with torch.device("meta"):
        model = nn.Sequential(nn.Linear(10, 5), nn.BatchNorm1d(5))  # 55 + 10 parameters
    buffers = 5 + 5 + 1  # running mean, variance, batches tracked
    assert model_size.training_bytes(model, "adamw") == (65, 4 * (65 * 4 + buffers))
    assert model_size.training_bytes(model, "sgd") == (65, 4 * (65 * 3 + buffers))


def test_check_fits_refuses_only_what_the_whole_device_cannot_hold(monkeypatch):
    with torch.device("meta"):
        model = nn.Linear(1000, 1000)  # 1,001,000 parameters: 16 MB with adamw
    cpu = torch.device("cpu")
    assert model_size.device_memory(cpu) > 2**26
    model_size.check_fits(model, "m", {}, "adamw", cpu)
    monkeypatch.setattr(model_size, "device_memory", lambda device: 2**20)
    with pytest.raises(SpecError, match=r"^model: model 'm' has 1,001,000 parameters; "
                       r"training it needs at least 0.0 GiB .* than the 0.0 GiB"):
        model_size.check_fits(model, "m", {}, "adamw", cpu)
    with pytest.raises(SpecError, match=r"^model_options: model 'm' with width=9 has"):
        model_size.check_fits(model, "m", {"width": 9}, "sgd", cpu, "model_options")
    monkeypatch.setattr(model_size, "device_memory", lambda device: None)  # unknown: passes
    model_size.check_fits(model, "m", {}, "adamw", cpu)
