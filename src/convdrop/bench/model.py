"""Whole-model figure for ``convdrop bench``: DropBlock's cost in a ResNet-18 training step.

One SGD step of the CIFAR ResNet-18 (batch 64, 32x32) with DropBlock at the paper's
sites in groups 3 and 4 (p = 0.1, block 3), against the same model with those layers
at p = 0. The variants are timed in alternation so machine noise hits them alike, and
the same p = 0 step timed twice shows how large that noise is. On a shared 2-core
machine it is a few % of a 1 s step, more than DropBlock costs, so a last figure
replays the DropBlock layers alone at the shapes they see.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

from convdrop._tables import markdown_table
from convdrop.bench.ops import time_round_robin
from convdrop.layers import DropBlock1d, DropBlock2d, DropBlock3d
from convdrop.models import create


def _step_timer(model: nn.Module, batch: int, device: str) -> Callable[[], float]:
    torch.manual_seed(0)
    images = torch.randn(batch, 3, 32, 32, device=device)
    labels = torch.randint(0, 10, (batch,), device=device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    model.train()

    def step() -> float:
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        loss = nn.functional.cross_entropy(model(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if device.startswith("cuda"):
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


def _sites_alone(model: nn.Module, batch: int, device: str, repeats: int) -> float:
    """Milliseconds per step spent in the model's DropBlock layers on their own: each
    layer's forward + backward replayed on a tensor of the shape it sees in the model."""
    shapes: list[tuple[nn.Module, tuple[int, ...]]] = []
    hooks = [m.register_forward_hook(lambda mod, args, out: shapes.append((mod, args[0].shape)))
             for m in _dropblock_layers(model)]
    with torch.no_grad():
        model(torch.randn(batch, 3, 32, 32, device=device))
    for hook in hooks:
        hook.remove()
    total = 0.0
    for layer, shape in shapes:
        x = torch.randn(shape, device=device, requires_grad=True)
        grad = torch.randn(shape, device=device)
        total += time_round_robin({"layer": layer}, x, grad, repeats)["layer"][0]
    return total


def model_overhead(*, quick: bool, device: str, repeats: int) -> str:
    """A markdown table: ms per training step with DropBlock off and on, and the overhead.

    Off and on are the same model (same weights, same memory): its DropBlock layers at
    p = 0, which returns the input untouched, or at their rates. Two separately built
    models differed by 3 % on this machine with no DropBlock in either.
    """
    batch = 16 if quick else 64
    model = create("resnet18_cifar", 10, dropblock=0.1).to(device)
    layers = _dropblock_layers(model)
    rates = [layer.p for layer in layers]
    step = _step_timer(model, batch, device)

    def set_rates(on: bool) -> None:
        for layer, rate in zip(layers, rates):
            layer.p = rate if on else 0.0

    def at_rates(on: bool) -> Callable[[], float]:
        def run() -> float:
            set_rates(on)
            return step()
        return run

    names = ("resnet18_cifar, DropBlock layers at p=0", "the same at p=0 again (noise check)",
             "the same, DropBlock p=0.1 (groups 3-4)")
    timed = _paired_overhead(dict(zip(names, (at_rates(False), at_rates(False),
                                              at_rates(True)))), max(3, repeats))
    set_rates(True)
    base_ms = timed[names[0]][0]
    alone = _sites_alone(model, batch, device, repeats)
    rows = [[names[0], f"{base_ms:.1f}", ""]]
    rows += [[name, f"{timed[name][0]:.1f}", f"{timed[name][1]:+.1%}"] for name in names[1:]]
    rows += [[f"its {len(layers)} DropBlock layers alone, replayed", f"{alone:.1f}",
              f"{alone / base_ms:+.1%}"]]
    return "\n".join([
        f"### ResNet-18 (CIFAR stem) training step, batch {batch}, 32x32, {device}",
        "",
        markdown_table(("model", "ms / step", "overhead"), rows, (None, "right", "right")),
        "",
        "Overheads are medians of per-round ratios to the first row; the noise check is the",
        "same step again, so it shows how far a ratio moves by chance. The replayed row times",
        "each DropBlock layer's forward + backward alone, at the shape it sees in the model.",
    ])
