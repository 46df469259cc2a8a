"""Whole-model figure for ``convdrop bench``: DropBlock's cost in a ResNet-18 training step.

One SGD step of the CIFAR ResNet-18 (batch 64, 32x32) with DropBlock at the paper's
sites in groups 3 and 4 (p = 0.1, block 3), against the same model without it.
The two are timed in alternation so machine noise hits both alike. On a shared
2-core machine that noise (a few % of a 1 s step) is larger than DropBlock's cost, so
a second figure replays the DropBlock layers alone at the shapes they see.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch
from torch import nn


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


def _paired_overhead(base: Callable[[], float], other: Callable[[], float],
                     rounds: int) -> tuple[float, float, float]:
    """Median ms of each step and the median of the per-round ratio ``other / base``, less 1.

    Each round runs both steps back to back, in alternating order, so slow drift of the
    machine cancels in the ratio; the first round warms up.
    """
    pairs: list[tuple[float, float]] = []
    for round_ in range(rounds + 1):
        if round_ % 2:
            b, o = base(), other()
        else:
            o, b = other(), base()
        if round_ > 0:
            pairs.append((b, o))
    return (statistics.median(b for b, _ in pairs), statistics.median(o for _, o in pairs),
            statistics.median(o / b for b, o in pairs) - 1.0)


def _sites_alone(model: nn.Module, batch: int, device: str, repeats: int) -> float:
    """Milliseconds per step spent in the model's DropBlock layers on their own: each
    layer's forward + backward replayed on a tensor of the shape it sees in the model."""
    from convdrop.layers import DropBlock1d, DropBlock2d, DropBlock3d

    shapes: list[tuple[nn.Module, tuple[int, ...]]] = []
    hooks = [m.register_forward_hook(lambda mod, args, out: shapes.append((mod, args[0].shape)))
             for m in model.modules() if isinstance(m, (DropBlock1d, DropBlock2d, DropBlock3d))]
    with torch.no_grad():
        model(torch.randn(batch, 3, 32, 32, device=device))
    for hook in hooks:
        hook.remove()
    total = 0.0
    for layer, shape in shapes:
        x = torch.randn(shape, device=device, requires_grad=True)
        grad = torch.randn(shape, device=device)
        times = []
        for _ in range(repeats + 2):
            start = time.perf_counter()
            layer(x).backward(grad)
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            times.append((time.perf_counter() - start) * 1e3)
        total += statistics.median(times[2:])
    return total


def model_overhead(*, quick: bool, device: str, repeats: int) -> str:
    """A markdown table: ms per training step with and without DropBlock, and the overhead."""
    from convdrop.models import create

    batch = 16 if quick else 64
    plain = create("resnet18_cifar", 10).to(device)
    with_db = create("resnet18_cifar", 10, dropblock=0.1).to(device)
    base_ms, db_ms, overhead = _paired_overhead(
        _step_timer(plain, batch, device), _step_timer(with_db, batch, device),
        max(3, repeats))
    alone = _sites_alone(with_db, batch, device, repeats)
    return "\n".join([
        f"### ResNet-18 (CIFAR stem) training step, batch {batch}, 32x32, {device}",
        "",
        "| model | ms / step | overhead |",
        "|---|---:|---:|",
        f"| resnet18_cifar | {base_ms:.1f} | |",
        f"| + DropBlock p=0.1 (groups 3-4) | {db_ms:.1f} | {overhead:+.1%} |",
        f"| its DropBlock layers alone, replayed | {alone:.1f} | {alone / base_ms:+.1%} |",
        "",
        "The overhead is the median of paired per-round ratios; the replayed row times each",
        "DropBlock layer's forward + backward on its own, at the shape it sees in the model.",
    ])
