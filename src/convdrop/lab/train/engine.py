"""Training and evaluation with explicit objects: no argument bag, no hidden state.

The caller builds the model, loader, optimizer and schedulers with the small
factories here and passes them in; the loop owns the step counter and advances
the LR and drop-rate schedulers once per batch (STYLE rule 5). Randomness that
the loop itself draws (augmentation) comes from an explicit ``torch.Generator``.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from typing import Protocol

import numpy as np
import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR, LRScheduler
from torch.utils.data import DataLoader, Dataset, Sampler

from convdrop.errors import UserError
from convdrop.lab.data.augment import Augment
from convdrop.ops import validate as v

__all__ = [
    "Augment", "EpochStats", "EvalStats", "NonFiniteLossError", "evaluate", "make_grad_scaler",
    "make_loader", "make_loss", "make_lr_scheduler", "make_optimizer",
    "seed_everything", "train_one_epoch",
]

OPTIMIZERS = ("sgd", "adamw")
LR_SCHEDULES = ("cosine", "step", "none")
AMP_DTYPES = (torch.float16, torch.bfloat16)
Batch = tuple[torch.Tensor, torch.Tensor]  # (images Tensor[N, C, H, W], labels Tensor[N])


class NonFiniteLossError(UserError, RuntimeError):
    """The training loss became NaN or inf; the run should stop, other runs can go on.

    A user error: the settings (learning rate, drop rate) made training diverge.
    """

    def __init__(self, loss: float, epoch: int | None, step: int, steps: int) -> None:
        where = f"epoch {epoch}, " if epoch is not None else ""
        super().__init__(
            f"non-finite training loss {loss} at {where}step {step + 1} of {steps}; the "
            f"weights were not updated with it. Lower the learning rate or the drop rate."
        )
        self.loss, self.epoch, self.step = loss, epoch, step


class Steppable(Protocol):
    """Anything advanced once per batch, e.g. ``convdrop.placement.scheduler.DropRateScheduler``."""

    def step(self) -> object: ...


@dataclass(frozen=True)
class EpochStats:
    loss: float  # mean training loss over examples (with regularizers active)
    accuracy: float  # fraction of training examples classified right, in [0, 1]
    seconds: float  # wall time of the epoch
    steps: int  # optimizer steps (batches) taken
    images: int = 0  # training examples seen (this process's)

    @property
    def images_per_second(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True)
class EvalStats:
    loss: float  # mean loss over examples
    accuracy: float  # fraction classified right, in [0, 1]


def seed_everything(seed: int) -> torch.Generator:
    """Seed ``random``, numpy and torch (all devices); return a CPU generator for the loop.

    The generator's stream is derived from ``seed`` but differs from the global one, so
    augmentation draws are not the same numbers as weight init. Deterministic kernels
    are not switched on: GPU runs may still differ in the last bits.
    """
    v.check_int(seed, "seed", 0, 2**32, expected="an int in [0, 2**32)")
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    derived = int(np.random.SeedSequence([seed, 1]).generate_state(1)[0])
    return torch.Generator().manual_seed(derived)


def make_optimizer(
    model: nn.Module, name: str, lr: float, weight_decay: float, momentum: float = 0.9,
    *, nesterov: bool = False,
) -> torch.optim.Optimizer:
    """SGD with momentum (optionally Nesterov) or AdamW over the trainable parameters.

    Weight decay applies to every parameter, biases and norm weights included (simple;
    the TF DropBlock reference exempts batch-norm variables). AdamW ignores ``momentum``.
    """
    if name not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {name!r}")
    v.check_number(lr, "lr", 0, math.inf, include_low=False, include_high=False,
                   expected="a finite number > 0")
    v.check_number(weight_decay, "weight_decay", 0, math.inf, include_high=False,
                   expected="a finite number >= 0")
    params = [p for p in model.parameters() if p.requires_grad]
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    v.check_number(momentum, "momentum", 0, 1, include_low=not nesterov, include_high=False,
                   expected="in [0, 1) (> 0 with nesterov)")
    return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay,
                           nesterov=nesterov)


def cosine_factor(step: int, total_steps: int) -> float:
    """LR multiplier 0.5 * (1 + cos(pi * t / T)): 1 at step 0, 0 at ``total_steps``."""
    return 0.5 * (1.0 + math.cos(math.pi * min(step, total_steps) / total_steps))


def step_factor(step: int, step_size: int, gamma: float) -> float:
    """LR multiplier gamma ** (t // step_size)."""
    return gamma ** (step // step_size)


def constant_factor(step: int) -> float:
    return 1.0


def make_lr_scheduler(
    optimizer: torch.optim.Optimizer, name: str, total_steps: int,
    step_size: int | None = None, gamma: float = 0.1,
) -> LRScheduler:
    """A per-batch LR schedule, a pure function of the step wrapped in ``LambdaLR``.

    ``total_steps`` is epochs x batches. "step" multiplies the LR by ``gamma`` every
    ``step_size`` steps (default: a third of ``total_steps``, rounded up). "none" keeps
    it constant, so callers can always call ``.step()``.
    """
    if name not in LR_SCHEDULES:
        raise ValueError(f"lr schedule must be one of {LR_SCHEDULES}, got {name!r}")
    total_steps = v.check_positive_int(total_steps, "total_steps")
    if name == "cosine":
        factor: Callable[[int], float] = partial(cosine_factor, total_steps=total_steps)
    elif name == "step":
        size = -(-total_steps // 3) if step_size is None else step_size
        v.check_positive_int(size, "step_size")
        v.check_number(gamma, "gamma", 0, 1, include_low=False, expected="in (0, 1]")
        factor = partial(step_factor, step_size=size, gamma=gamma)
    else:
        factor = constant_factor
    return LambdaLR(optimizer, factor)


def make_loader(
    dataset: Dataset, batch_size: int, *, shuffle: bool,
    generator: torch.Generator | None = None, sampler: Sampler | None = None,
    drop_last: bool = False, workers: int = 0, pin_memory: bool = False,
    persistent: bool = False,
) -> DataLoader:
    """A loader; ``generator`` fixes the shuffle and the workers' seeds.

    ``workers`` > 0 decodes in that many processes, each with 4 batches in flight (for
    streamed data), kept alive across epochs when ``persistent``; 0 loads in this process
    (in-memory tensors). ``pin_memory`` speeds host-to-device copies to CUDA.
    """
    v.check_positive_int(batch_size, "batch_size")
    v.check_nonnegative_int(workers, "workers")
    if shuffle and sampler is not None:
        raise ValueError("shuffle must be False when a sampler is given (it decides the order)")
    parallel = {"persistent_workers": persistent, "prefetch_factor": 4} if workers > 0 else {}
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, sampler=sampler,
                      generator=generator, num_workers=workers, drop_last=drop_last,
                      pin_memory=pin_memory, **parallel)


def make_loss(label_smoothing: float = 0.0) -> nn.CrossEntropyLoss:
    """Cross-entropy with torch's built-in label smoothing (Szegedy et al. 2016)."""
    return nn.CrossEntropyLoss(label_smoothing=v.check_p(label_smoothing, "label_smoothing"))


def make_grad_scaler(
    device: torch.device, amp_dtype: torch.dtype | None
) -> torch.amp.GradScaler | None:
    """A ``GradScaler`` for float16 autocast on CUDA (keep it across epochs), else None."""
    _check_amp_dtype(amp_dtype)
    if device.type == "cuda" and amp_dtype == torch.float16:
        return torch.amp.GradScaler("cuda")
    return None


def _check_amp_dtype(amp_dtype: torch.dtype | None) -> None:
    if amp_dtype is not None and amp_dtype not in AMP_DTYPES:
        raise ValueError(f"amp_dtype must be None, torch.float16 or torch.bfloat16, "
                         f"got {amp_dtype!r}")


def _inputs(batch: Batch, device: torch.device, channels_last: bool) -> Batch:
    images, labels = batch
    images = images.to(device, non_blocking=True)
    if channels_last and images.dim() == 4:
        images = images.contiguous(memory_format=torch.channels_last)
    return images, labels.to(device, non_blocking=True)


def train_one_epoch(
    model: nn.Module, loader: Iterable[Batch], optimizer: torch.optim.Optimizer, *,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], device: torch.device,
    lr_scheduler: LRScheduler | None = None, drop_scheduler: Steppable | None = None,
    augment: Callable[..., torch.Tensor] | None = None, generator: torch.Generator | None = None,
    scaler: torch.amp.GradScaler | None = None, channels_last: bool = False,
    amp_dtype: torch.dtype | None = None, progress: Callable[[int, int], object] | None = None,
    epoch: int | None = None,
) -> EpochStats:
    """One pass over ``loader`` in train mode; schedulers step once per batch, after the update.

    The model must already be on ``device``; ``loss_fn`` must average over the batch
    (cross-entropy's default). ``augment(images, generator)`` runs on the
    device. Autocast (``amp_dtype``) applies on CUDA only; elsewhere the run stays fp32.
    ``epoch`` only labels errors. Raises :class:`NonFiniteLossError` before the update
    when the loss is NaN or inf.
    """
    _check_amp_dtype(amp_dtype)
    use_amp = amp_dtype is not None and device.type == "cuda"
    if channels_last:
        model.to(memory_format=torch.channels_last)
    model.train()
    steps, start = len(loader), time.perf_counter()  # type: ignore[arg-type]
    loss_sum, correct, seen = 0.0, torch.zeros((), device=device, dtype=torch.long), 0
    for index, batch in enumerate(loader):
        images, labels = _inputs(batch, device, channels_last)
        if augment is not None:
            images = augment(images, generator)
        with torch.autocast(device.type, dtype=amp_dtype, enabled=use_amp):
            logits = model(images)  # (N, classes)
            loss = loss_fn(logits, labels)
        value = loss.item()
        if not math.isfinite(value):
            raise NonFiniteLossError(value, epoch, index, steps)
        optimizer.zero_grad(set_to_none=True)
        _backward_and_step(loss, optimizer, scaler)
        for scheduler in (lr_scheduler, drop_scheduler):
            if scheduler is not None:
                scheduler.step()
        loss_sum += value * labels.shape[0]
        correct += (logits.argmax(dim=1) == labels).sum()
        seen += labels.shape[0]
        if progress is not None:
            progress(index, steps)
    if seen == 0:
        raise ValueError("loader yielded no batches; expected at least one")
    return EpochStats(loss_sum / seen, correct.item() / seen, time.perf_counter() - start, steps,
                      seen)


def _backward_and_step(loss: torch.Tensor, optimizer: torch.optim.Optimizer,
                       scaler: torch.amp.GradScaler | None) -> None:
    if scaler is None:
        loss.backward()
        optimizer.step()
        return
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()


def evaluate(
    model: nn.Module, loader: Iterable[Batch], *,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], device: torch.device,
    channels_last: bool = False,
) -> EvalStats:
    """Mean loss and accuracy in eval mode under ``inference_mode``; restores the mode after."""
    was_training = model.training
    model.eval()
    loss_sum, correct, seen = 0.0, 0, 0
    try:
        with torch.inference_mode():
            for batch in loader:
                images, labels = _inputs(batch, device, channels_last)
                logits = model(images)  # (N, classes)
                loss_sum += loss_fn(logits, labels).item() * labels.shape[0]
                correct += int((logits.argmax(dim=1) == labels).sum())
                seen += labels.shape[0]
    finally:
        model.train(was_training)
    if seen == 0:
        raise ValueError("loader yielded no batches; expected at least one")
    return EvalStats(loss_sum / seen, correct / seen)
