"""No silent footguns: a second scheduler, a re-regularize with other settings, late sites."""

from __future__ import annotations

import copy
import gc

import pytest
import torch
from torch import nn

import convdrop
from convdrop import DropRateScheduler, Rule, regularize


def _net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1),
                         convdrop.DropBlock2d(0.2, 3))


def test_a_second_scheduler_on_a_ramping_model_is_an_error():
    model = _net()
    first = DropRateScheduler(model, "linear", 10)
    first.step()
    with pytest.raises(ValueError, match=r"already ramped by DropRateScheduler.*release\(\)"):
        DropRateScheduler(model, "linear", 10)
    assert model[3].p == pytest.approx(0.02)  # the failed build changed nothing
    first.release()
    assert model[3].p == 0.2  # the target back
    assert DropRateScheduler(model, "constant", 10).targets == {"3": 0.2}


def test_a_scheduler_after_a_finished_one_starts_from_the_recorded_targets():
    model = _net()
    first = DropRateScheduler(model, "linear", 10)
    first.step()  # p = 0.02, a ramped-down rate
    del first
    gc.collect()
    again = DropRateScheduler(model, "linear", 10)
    assert again.targets == {"3": 0.2}  # not 0.02: regularization stays on
    twin = copy.deepcopy(model)  # a copy of a ramped model knows its targets too
    assert DropRateScheduler(twin, "constant", 1).targets == {"3": 0.2}


def test_sites_added_after_the_scheduler_stop_the_step_until_refresh():
    model = _net()
    sched = DropRateScheduler(model, "linear", 10)
    regularize(model, Rule("dropout", 0.1, match="0"))
    with pytest.raises(ValueError, match=r"added \['0.dropout'\].*refresh\(\)"):
        sched.step()
    assert sched.refresh() == {"added": ["0.dropout"], "removed": []}
    sched.step()
    assert sched.rates() == pytest.approx({"3": 0.02, "0.dropout": 0.01})
    convdrop.unregularize(model)
    with pytest.raises(ValueError, match=r"removed \['0.dropout'\]"):
        sched.step()
    assert sched.refresh() == {"added": [], "removed": ["0.dropout"]}


def test_regularize_again_with_other_settings_is_an_error_or_an_update():
    model = regularize(_net(), Rule("dropblock", 0.1, block_size=3))
    regularize(model, Rule("dropblock", 0.1, block_size=3))  # the same: nothing to do
    with pytest.raises(ValueError, match=r"0.dropblock exists as DropBlock2d\(p=0.1, "
                                         r"block_size=3\).*update=True"):
        regularize(model, Rule("dropblock", 0.2, block_size=3))
    with pytest.raises(ValueError, match="block_size=5"):
        regularize(model, Rule("dropblock", 0.1, block_size=5))
    assert model[0].dropblock.p == 0.1
    regularize(model, Rule("dropblock", 0.2, block_size=5), update=True)
    assert (model[0].dropblock.p, model[0].dropblock.block_size) == (0.2, 5)
    assert len(model[0]._forward_hooks) == 1  # replaced, not hooked twice
    model.train()
    out = model(torch.ones(1, 3, 8, 8))
    assert out.shape == (1, 4, 8, 8)


def test_a_ramped_site_compares_by_its_target_and_updates_only_when_released():
    model = regularize(_net(), Rule("dropblock", 0.1, block_size=3, match="0"))
    sched = DropRateScheduler(model, "linear", 10)
    regularize(model, Rule("dropblock", 0.1, block_size=3, match="0"))  # p is 0 now: same
    with pytest.raises(ValueError, match="release"):
        regularize(model, Rule("dropblock", 0.3, block_size=3, match="0"), update=True)
    sched.release()
    regularize(model, Rule("dropblock", 0.3, block_size=3, match="0"), update=True)
    assert model[0].dropblock.p == 0.3
