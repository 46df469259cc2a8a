"""Whole-model figure for ``convdrop bench``: DropBlock's cost in a ResNet-18 training step.

One SGD step of the CIFAR ResNet-18 (batch 64, 32x32) with DropBlock at the paper's
sites in groups 3 and 4 (p = 0.1, block 3), against the same model without it.
The two are timed in alternation so machine noise hits both alike.
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


def model_overhead(*, quick: bool, device: str, repeats: int) -> str:
    """A markdown table: ms per training step with and without DropBlock, and the overhead."""
    from convdrop.models import create

    batch = 16 if quick else 64
    steps = {
        "resnet18_cifar": _step_timer(create("resnet18_cifar", 10).to(device), batch, device),
        "+ DropBlock p=0.1 (groups 3-4)": _step_timer(
            create("resnet18_cifar", 10, dropblock=0.1).to(device), batch, device),
    }
    samples: dict[str, list[float]] = {name: [] for name in steps}
    rounds = max(3, repeats // 2)
    for round_ in range(rounds + 1):
        for name, step in steps.items():
            elapsed = step()
            if round_ > 0:  # the first round warms up
                samples[name].append(elapsed)
    base, with_db = (statistics.median(v) for v in samples.values())
    return "\n".join([
        f"### ResNet-18 (CIFAR stem) training step, batch {batch}, 32x32, {device}",
        "",
        "| model | ms / step | overhead |",
        "|---|---:|---:|",
        f"| resnet18_cifar | {base:.1f} | |",
        f"| + DropBlock p=0.1 (groups 3-4) | {with_db:.1f} | {with_db / base - 1:+.1%} |",
    ])
