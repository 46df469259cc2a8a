"""convdrop.placement.schedules: schedule values, the scheduler, resume, scales, errors."""

from __future__ import annotations

import io
import math

import pytest
import torch
from torch import nn

import convdrop
from convdrop.placement import schedules as S
from convdrop.placement.scheduler import DropRateScheduler


class Net(nn.Module):
    """Regularizers under layer3/layer4 like the paper's ResNet, plus one in the head."""

    def __init__(self, p: float = 0.2) -> None:
        super().__init__()
        self.layer3 = nn.Sequential(nn.Conv2d(2, 2, 3, padding=1), convdrop.DropBlock2d(p, 3))
        self.layer4 = nn.Sequential(nn.Conv2d(2, 2, 3, padding=1), convdrop.DropBlock2d(p, 3))
        self.head = convdrop.Dropout(0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.layer4(self.layer3(x)))


# ---------------------------------------------------------------- pure schedules


@pytest.mark.parametrize(("fn", "expected"), [
    (S.constant, [1.0, 1.0, 1.0, 1.0, 1.0]),
    (S.linear, [0.0, 0.25, 0.5, 1.0, 1.0]),
    (S.cosine, [0.0, (1 - math.cos(math.pi / 4)) / 2, 0.5, 1.0, 1.0]),
    (S.step, [0.0, 0.25, 0.5, 1.0, 1.0]),
])
def test_schedule_values_at_steps_0_1_2_4_and_past_the_end(fn, expected):
    got = [fn(s, 4) for s in (0, 1, 2, 4, 9)]
    assert got == pytest.approx(expected, abs=1e-12)


def test_linear_is_the_papers_keep_prob_ramp():
    keep_prob, total = 0.9, 1000
    for t in (0, 1, 250, 999, 1000):
        paper = 1 - t / total * (1 - keep_prob)  # TF resnet_main.py
        assert 1 - (1 - keep_prob) * S.linear(t, total) == pytest.approx(paper, abs=1e-12)


def test_step_levels_and_cosine_monotone():
    assert [S.step(s, 10, levels=2) for s in (0, 4, 5, 9, 10)] == [0.0, 0.0, 0.5, 0.5, 1.0]
    values = [S.cosine(s, 50) for s in range(51)]
    assert all(b >= a for a, b in zip(values, values[1:]))


def test_warmup_holds_zero_then_runs_the_schedule_on_the_rest():
    f = S.get_schedule("linear", warmup_steps=4)
    assert [f(s, 12) for s in (0, 3, 4, 8, 12, 20)] == pytest.approx([0, 0, 0, 0.5, 1, 1])
    late = S.get_schedule("constant", warmup_steps=2)
    assert [late(s, 5) for s in (0, 1, 2, 4)] == [0.0, 0.0, 1.0, 1.0]
    assert S.get_schedule("step", levels=2)(5, 10) == 0.5


@pytest.mark.parametrize(("call", "words"), [
    (lambda: S.get_schedule("exponential"), ["schedule", "'exponential'", "linear"]),
    (lambda: S.get_schedule("linear", warmup_steps=-1), ["warmup_steps", "-1"]),
    (lambda: S.get_schedule("linear", levels=3), ["takes no options"]),
    (lambda: S.get_schedule("step", level=3), ["levels", "level"]),
    (lambda: S.get_schedule("linear", warmup_steps=5)(0, 5), ["warmup_steps", "< total_steps"]),
    (lambda: S.linear(-1, 10), ["step", "-1"]),
    (lambda: S.linear(0, 0), ["total_steps", "0"]),
])
def test_schedule_errors_name_the_argument(call, words):
    with pytest.raises(ValueError) as err:
        call()
    assert all(w in str(err.value) for w in words)


# ---------------------------------------------------------------- the scheduler


def test_scheduler_ramps_every_regularizer_from_zero_to_its_target():
    net = Net(0.2)
    sched = DropRateScheduler(net, "linear", 10)
    assert sched.targets == {"layer3.1": 0.2, "layer4.1": 0.2, "head": 0.5}
    assert set(sched.rates().values()) == {0.0} and sched.current_factor() == 0.0
    for _ in range(3):
        sched.step()
    assert sched.rates() == pytest.approx({"layer3.1": 0.06, "layer4.1": 0.06, "head": 0.15})
    assert net.head.p == pytest.approx(0.15) and sched.step_count == 3
    for _ in range(20):
        sched.step()
    assert sched.rates() == pytest.approx(sched.targets)


def test_scheduler_takes_a_list_a_dict_and_a_callable_schedule():
    a, b = convdrop.DropBlock2d(0.4, 3), convdrop.SpatialDropout(0.2)
    sched = DropRateScheduler([a, b], lambda step, total: 0.5, 3)
    assert sched.rates() == pytest.approx({"0": 0.2, "1": 0.1})
    sched = DropRateScheduler({"x": convdrop.Dropout(0.4)}, "constant", 3)
    assert sched.rates() == {"x": 0.4}
    # the first scheduler is gone; a new one starts from the target it recorded (0.4),
    # not from the rate it left behind (0.2), which would switch regularization down
    assert DropRateScheduler([a], "constant", 3).targets == {"0": 0.4}


def test_eval_and_forward_never_move_the_rates():
    torch.manual_seed(0)
    net = Net()
    sched = DropRateScheduler(net, "linear", 100)
    sched.step()
    before = (sched.rates(), sched.step_count, sched.state_dict())
    x = torch.randn(2, 2, 6, 6)
    net.eval()
    for _ in range(5):
        assert torch.equal(net(x), net.layer4[0](net.layer3[0](x)))  # identity sites in eval
    net.train()
    for _ in range(5):
        net(x)
    assert (sched.rates(), sched.step_count, sched.state_dict()) == before


def test_resume_continues_the_ramp_where_it_stopped():
    first = DropRateScheduler(Net(), "cosine", 20, scales={"layer3": 0.25})
    for _ in range(7):
        first.step()
    buffer = io.BytesIO()
    torch.save(first.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)

    resumed_net = Net(0.9)  # targets recorded here are wrong until the state is loaded
    resumed = DropRateScheduler(resumed_net, "cosine", 20)
    resumed.load_state_dict(state)
    assert resumed.step_count == 7 and resumed.rates() == first.rates()  # applied at once
    for _ in range(15):
        first.step()
        resumed.step()
        assert resumed.rates() == first.rates()
    assert resumed_net.layer3[1].p == pytest.approx(0.05)


def test_ranks_agree_whatever_they_run_forward():
    """Under DDP each rank steps once per batch; the rates depend on nothing else."""
    x = torch.randn(1, 2, 5, 5)
    ranks = [Net(), Net()]
    scheds = [DropRateScheduler(net, "linear", 8) for net in ranks]
    for step in range(6):
        for _ in range(step % 3):  # rank 0 runs extra forwards (e.g. a validation pass)
            ranks[0](x)
        for sched in scheds:
            sched.step()
        assert scheds[0].rates() == scheds[1].rates()


def test_scales_take_the_longest_prefix_and_see_through_wrappers():
    class Wrapped(nn.Module):  # the layout of DistributedDataParallel: model.module
        def __init__(self) -> None:
            super().__init__()
            self.module = Net(0.4)

    sched = DropRateScheduler(Wrapped(), "constant", 1,
                              scales={"layer3": 0.25, "layer3.1": 0.5, "head": 0.0})
    assert sched.rates() == pytest.approx(
        {"module.layer3.1": 0.2, "module.layer4.1": 0.4, "module.head": 0.0})


@pytest.mark.parametrize(("make", "words"), [
    (lambda: DropRateScheduler(Net(), "warp", 10), ["schedule", "'warp'"]),
    (lambda: DropRateScheduler(Net(), "linear", 0), ["total_steps", "0"]),
    (lambda: DropRateScheduler(Net(), "linear", 2.5), ["total_steps", "2.5"]),
    (lambda: DropRateScheduler(nn.Conv2d(1, 1, 1), "linear", 5),
     ["no convdrop regularizers", "Conv2d"]),
    (lambda: DropRateScheduler([nn.Dropout()], "linear", 5), ["model_or_modules[", "Dropout"]),
    (lambda: DropRateScheduler([], "linear", 5), ["empty"]),
    (lambda: DropRateScheduler(Net(), lambda s, t: 1.5, 5), ["returned 1.5", "[0, 1]"]),
    (lambda: DropRateScheduler(Net(), "linear", 5, scales={"layer9": 0.5}), ["layer9"]),
    (lambda: DropRateScheduler(Net(), "linear", 5, scales={"head": -1}), ["scales", "-1"]),
    (lambda: DropRateScheduler(Net(), "linear", 5, scales={"head": 3}), ["head", "[0, 1]"]),
])
def test_scheduler_errors(make, words):
    with pytest.raises(ValueError) as err:
        make()
    assert all(w in str(err.value) for w in words)


def test_load_state_dict_rejects_another_layout():
    sched = DropRateScheduler(Net(), "linear", 10)
    state = sched.state_dict()
    other = DropRateScheduler([convdrop.Dropout(0.1)], "linear", 10)
    with pytest.raises(ValueError, match="same model layout"):
        other.load_state_dict(state)
    with pytest.raises(ValueError, match="missing keys"):
        sched.load_state_dict({"step": 1})
    with pytest.raises(ValueError, match="state\\['step'\\]"):
        sched.load_state_dict({**state, "step": -2})


def test_repr_names_schedule_and_progress():
    sched = DropRateScheduler(Net(), S.get_schedule("linear", warmup_steps=2), 10)
    sched.step()
    assert repr(sched) == "DropRateScheduler(schedule=linear+warmup2, step=1/10, sites=3)"


_DDP_CHILD = """
import datetime, json, os, sys
import torch, torch.distributed as dist
from torch import nn
import convdrop
from convdrop.placement.scheduler import DropRateScheduler

class Net(nn.Module):
    def __init__(self, p):
        super().__init__()
        self.layer3 = nn.Sequential(nn.Conv2d(2, 2, 3, padding=1), convdrop.DropBlock2d(p, 3))
        self.layer4 = nn.Sequential(nn.Conv2d(2, 2, 3, padding=1), convdrop.DropBlock2d(p, 3))
        self.head = convdrop.Dropout(0.5)
    def forward(self, x):
        return self.head(self.layer4(self.layer3(x)))

dist.init_process_group("gloo", init_method="file://" + sys.argv[1], rank=0, world_size=1,
                        timeout=datetime.timedelta(seconds=60))
ddp = nn.parallel.DistributedDataParallel(Net(0.4))
sched = DropRateScheduler(ddp, "linear", 4, scales={"layer3": 0.25})
ddp(torch.randn(2, 2, 6, 6)).sum().backward()
sched.step()
print(json.dumps(sched.rates()), flush=True)
dist.destroy_process_group()
os._exit(0)  # gloo's threads can stall interpreter shutdown; the result is already out
"""


@pytest.mark.skipif(not torch.distributed.is_available(), reason="needs torch.distributed")
def test_under_distributed_data_parallel(tmp_path):
    """A real DDP wrapper (gloo, one rank, file store: no network): paths gain "module.".

    It runs in a child process: an in-process gloo group sometimes hung pytest's exit.
    """
    import json
    import os
    import subprocess
    import sys

    env = {**os.environ, "GLOO_SOCKET_IFNAME": "lo", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", _DDP_CHILD, str(tmp_path / "store")],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    rates = json.loads(done.stdout.strip().splitlines()[-1])
    assert rates == pytest.approx(
        {"module.layer3.1": 0.025, "module.layer4.1": 0.1, "module.head": 0.125})
