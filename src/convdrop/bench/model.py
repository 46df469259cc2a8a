"""Whole-model figure for ``convdrop bench``: DropBlock's cost in a training step.

On the CPU: one SGD step of the CIFAR ResNet-18 (batch 64, 32x32) with DropBlock at the
paper's sites in groups 3 and 4 (p = 0.1). On CUDA, the setting users train in: the
ResNet-50 (batch 128, 224x224, bf16 autocast, channels_last) with all 36 of the paper's
sites, and, where timm is installed, timm's ``resnet50(drop_block_rate=0.1)`` (9 sites,
one mask shared by the channels) beside it. Each model is timed against itself with its
DropBlock layers at p = 0, in alternation so machine noise hits both alike; the same
p = 0 step timed twice shows how large that noise is, and a last figure replays
convdrop's DropBlock layers alone at the shapes they see.
"""

from __future__ import annotations

import contextlib
import importlib.util
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import torch
from torch import nn

from convdrop._tables import markdown_table
from convdrop.bench.ops import time_round_robin
from convdrop.layers import DropBlock1d, DropBlock2d, DropBlock3d
from convdrop.models import create


@dataclass(frozen=True)
class StepSetup:
    """One training step to time."""

    model: str  # a convdrop.models name
    title: str  # how the table names it
    image: int  # input side (square images)
    batch: int
    classes: int
    channels_last: bool
    amp: torch.dtype | None  # autocast dtype, None for fp32
    timm: bool  # also time timm's resnet50(drop_block_rate=0.1), where installed


CPU_STEP = StepSetup("resnet18_cifar", "ResNet-18 (CIFAR stem)", 32, 64, 10, False, None,
                     False)
CUDA_STEP = StepSetup("resnet50", "ResNet-50", 224, 128, 1000, True, torch.bfloat16, True)


def step_setup(device: str, quick: bool) -> StepSetup:
    """The CPU or the CUDA setting; ``quick`` shrinks the batch."""
    if device.startswith("cuda"):
        return replace(CUDA_STEP, batch=32) if quick else CUDA_STEP
    return replace(CPU_STEP, batch=16) if quick else CPU_STEP


def _inputs(setup: StepSetup, device: str) -> torch.Tensor:
    images = torch.randn(setup.batch, 3, setup.image, setup.image, device=device)
    return images.contiguous(memory_format=torch.channels_last) if setup.channels_last \
        else images


def _step_timer(model: nn.Module, setup: StepSetup, device: str) -> Callable[[], float]:
    torch.manual_seed(0)
    if setup.channels_last:
        model.to(memory_format=torch.channels_last)
    images = _inputs(setup, device)
    labels = torch.randint(0, setup.classes, (setup.batch,), device=device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    model.train()
    cuda = device.startswith("cuda")

    def autocast() -> contextlib.AbstractContextManager:
        if setup.amp is None:
            return contextlib.nullcontext()
        return torch.autocast(torch.device(device).type, dtype=setup.amp)

    def step() -> float:
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        with autocast():
            loss = nn.functional.cross_entropy(model(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if cuda:
            torch.cuda.synchronize()
        return (time.perf_counter() - start) * 1e3

    return step


def _paired_overhead(steps: dict[str, Callable[[], float]],
                     rounds: int) -> dict[str, tuple[float, float]]:
    """Per step: median ms, and the median per-round ratio to the first step, less 1.

    Each round runs every step once, in forward then reverse order on alternate rounds,
    so slow drift of the machine cancels in the ratios; the first round warms up.
    """
    names = list(steps)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for round_ in range(rounds + 1):
        for name in names if round_ % 2 else names[::-1]:
            elapsed = steps[name]()
            if round_ > 0:
                samples[name].append(elapsed)
    base = samples[names[0]]
    return {name: (statistics.median(values),
                   statistics.median(v / b for v, b in zip(values, base)) - 1.0)
            for name, values in samples.items()}


def _dropblock_layers(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, (DropBlock1d, DropBlock2d, DropBlock3d))]


def _sites_alone(model: nn.Module, setup: StepSetup, device: str, repeats: int) -> float:
    """Milliseconds per step spent in the model's DropBlock layers on their own: each
    layer's forward + backward replayed on a tensor of the shape and dtype it sees."""
    seen: list[tuple[nn.Module, torch.Tensor]] = []
    hooks = [m.register_forward_hook(lambda mod, args, out: seen.append((mod, args[0])))
             for m in _dropblock_layers(model)]
    amp = (torch.autocast(torch.device(device).type, dtype=setup.amp) if setup.amp
           else contextlib.nullcontext())
    with torch.no_grad(), amp:
        model(_inputs(setup, device))
    for hook in hooks:
        hook.remove()
    total = 0.0
    for layer, seen_input in seen:
        x = torch.randn_like(seen_input).requires_grad_(True)
        grad = torch.randn_like(seen_input)
        total += time_round_robin({"layer": layer}, x, grad, repeats)["layer"][0]
    return total


def _switch(layers: list[nn.Module], attribute: str) -> Callable[[bool], None]:
    """Sets every layer's rate ``attribute`` to its value now (on) or to 0 (off)."""
    rates = [getattr(layer, attribute) for layer in layers]

    def set_rates(on: bool) -> None:
        for layer, rate in zip(layers, rates):
            setattr(layer, attribute, rate if on else 0.0)

    return set_rates


def _at_rates(set_rates: Callable[[bool], None], step: Callable[[], float],
              on: bool) -> Callable[[], float]:
    def run() -> float:
        set_rates(on)
        return step()
    return run


def _timm_steps(setup: StepSetup, device: str) -> dict[str, Callable[[], float]]:
    """timm's resnet50(drop_block_rate=0.1), off and on; empty where timm is missing."""
    if not setup.timm or importlib.util.find_spec("timm") is None:
        return {}
    import timm  # an optional peer: imported only to time it
    from timm.layers import DropBlock2d as TimmDropBlock

    model = timm.create_model("resnet50", drop_block_rate=0.1, num_classes=setup.classes)
    model = model.to(device)
    layers = [m for m in model.modules() if isinstance(m, TimmDropBlock)]
    set_rates, step = _switch(layers, "drop_prob"), _step_timer(model, setup, device)
    return {"timm resnet50, drop_block_rate=0": _at_rates(set_rates, step, False),
            f"timm resnet50, drop_block_rate=0.1 ({len(layers)} shared-mask sites)":
                _at_rates(set_rates, step, True)}


def model_overhead(*, quick: bool, device: str, repeats: int,
                   setup: StepSetup | None = None) -> str:
    """A markdown table: ms per training step with DropBlock off and on, and the overhead.

    Off and on are the same model (same weights, same memory): its DropBlock layers at
    p = 0, which returns the input untouched, or at their rates. Two separately built
    models differed by 3 % on the CPU with no DropBlock in either. ``setup`` defaults to
    :func:`step_setup` for the device.
    """
    setup = setup or step_setup(device, quick)
    model = create(setup.model, setup.classes, dropblock=0.1).to(device)
    layers = _dropblock_layers(model)
    set_rates, step = _switch(layers, "p"), _step_timer(model, setup, device)
    names = (f"{setup.model}, DropBlock layers at p=0", "the same at p=0 again (noise check)",
             f"the same, DropBlock p=0.1 ({len(layers)} sites, per channel)")
    steps = dict(zip(names, (_at_rates(set_rates, step, False), _at_rates(set_rates, step, False),
                             _at_rates(set_rates, step, True))))
    timed = _paired_overhead(steps, max(3, repeats))
    set_rates(True)
    base_ms = timed[names[0]][0]
    alone = _sites_alone(model, setup, device, repeats)
    rows = [[names[0], f"{base_ms:.1f}", ""]]
    rows += [[name, f"{timed[name][0]:.1f}", f"{timed[name][1]:+.1%}"] for name in names[1:]]
    rows += [[f"its {len(layers)} DropBlock layers alone, replayed", f"{alone:.1f}",
              f"{alone / base_ms:+.1%}"]]
    timm_steps = _timm_steps(setup, device)
    if timm_steps:
        timm_timed = _paired_overhead(timm_steps, max(3, repeats))
        rows += [[name, f"{ms:.1f}", f"{ratio:+.1%}" if i else ""]
                 for i, (name, (ms, ratio)) in enumerate(timm_timed.items())]
    precision = f"{str(setup.amp).removeprefix('torch.')} autocast" if setup.amp else "fp32"
    layout = ", channels_last" if setup.channels_last else ""
    return "\n".join([
        f"### {setup.title} training step, batch {setup.batch}, {setup.image}x{setup.image}, "
        f"{precision}{layout}, {device}",
        "",
        markdown_table(("model", "ms / step", "overhead"), rows, (None, "right", "right")),
        "",
        "Overheads are medians of per-round ratios to the first row of each model; the noise",
        "check is the same step again, so it shows how far a ratio moves by chance. The",
        "replayed row times each DropBlock layer's forward + backward alone, at the shape it",
        "sees in the model.",
    ])
