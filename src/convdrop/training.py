"""The objects of one run, built from a spec, and its epoch loop with checkpoints.

``Trainer.create`` turns (spec, method, seed) into a model, optimizer, LR and
drop-rate schedulers, loss, augmentation and loaders; ``fit`` trains epoch by
epoch, writing ``metrics.csv`` and ``checkpoint.pt`` atomically after each one, and
resumes from the checkpoint when it exists. The drop-rate scheduler is stepped per
batch by the engine, so rates depend on the global step only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from convdrop import _io
from convdrop.engine import (
    Augment,
    evaluate,
    make_loader,
    make_loss,
    make_lr_scheduler,
    make_optimizer,
    resolve_device,
    seed_everything,
    train_one_epoch,
)
from convdrop.experiment import ExperimentSpec
from convdrop.layers import Regularizer
from convdrop.run import (
    METRIC_FIELDS,
    Progress,
    RunPaths,
    load_checkpoint,
    load_run_data,
    read_metrics,
    save_checkpoint,
)


def current_drop_rate(model: nn.Module) -> float:
    """The largest ``p`` of the model's regularizers right now (0 if it has none)."""
    return max((m.p for m in model.modules() if isinstance(m, Regularizer)), default=0.0)


@dataclass
class Trainer:
    """Everything one run trains with; ``world_size``/``rank`` > 1 only under torchrun."""

    spec: ExperimentSpec
    model: nn.Module
    optimizer: torch.optim.Optimizer
    lr_scheduler: Any
    drop_scheduler: Any
    loss_fn: nn.Module
    augment: Augment
    loaders: dict[str, Any]
    device: torch.device
    generator: torch.Generator
    world_size: int = 1
    rank: int = 0
    sampler: Any = None
    eval_loss: nn.Module = field(default_factory=make_loss)

    @property
    def is_writer(self) -> bool:
        return self.rank == 0

    @staticmethod
    def create(spec: ExperimentSpec, method: str, seed: int, *, device: str) -> Trainer:
        """Build a single-process trainer for ``method`` with ``seed``."""
        from convdrop.methods import build_recipe

        generator = seed_everything(seed)
        data = load_run_data(spec, seed)
        recipe = build_recipe(spec, method, data.num_classes, data.in_channels)
        target = resolve_device(device)
        model = recipe.model.to(target)
        if spec.channels_last:
            model = model.to(memory_format=torch.channels_last)
        loaders = {
            "train": make_loader(data.train, spec.batch_size, shuffle=True, generator=generator),
            "train_eval": make_loader(data.train, 256, shuffle=False),
            "val": make_loader(data.val, 256, shuffle=False),
            "test": make_loader(data.test, 256, shuffle=False),
        }
        steps = spec.epochs * math.ceil(len(data.train) / spec.batch_size)
        optimizer = make_optimizer(model, spec.optimizer, lr=spec.lr,
                                   weight_decay=spec.weight_decay)
        return Trainer(
            spec=spec, model=model, optimizer=optimizer,
            lr_scheduler=make_lr_scheduler(optimizer, spec.lr_schedule, steps),
            drop_scheduler=recipe.drop_scheduler(model, steps),
            loss_fn=make_loss(recipe.label_smoothing),
            augment=recipe.augment(spec.augment), loaders=loaders, device=target,
            generator=generator,
        )

    def state_dict(self, epoch: int) -> dict[str, Any]:
        """Everything a resume needs after ``epoch`` finished epochs."""
        state = {
            "epoch": epoch,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "lr_scheduler": self.lr_scheduler.state_dict(),
            "generator": self.generator.get_state(),
            "torch_rng": torch.get_rng_state(),
        }
        if self.drop_scheduler is not None:
            state["drop_scheduler"] = self.drop_scheduler.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> int:
        """Restore a checkpoint; returns the number of finished epochs."""
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.lr_scheduler.load_state_dict(state["lr_scheduler"])
        self.generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        if self.drop_scheduler is not None:
            self.drop_scheduler.load_state_dict(state["drop_scheduler"])
        return int(state["epoch"])

    def fit(self, paths: RunPaths, *, progress: Progress | None = None) -> list[dict[str, Any]]:
        """Train the remaining epochs; returns every epoch's metrics row."""
        state = load_checkpoint(paths.checkpoint)
        start = self.load_state_dict(state) if state is not None else 0
        rows: list[dict[str, Any]] = read_metrics(paths)[:start]
        epochs = self.spec.epochs
        if progress:
            progress(start, epochs)
        for epoch in range(start, epochs):
            rows.append(self.train_epoch(epoch))
            if self.is_writer:
                _io.write_csv(paths.metrics, rows, METRIC_FIELDS)
                save_checkpoint(paths.checkpoint, self.state_dict(epoch + 1))
            if progress:
                progress(epoch + 1, epochs)
        return rows

    def train_epoch(self, epoch: int) -> dict[str, Any]:
        """One epoch of training plus validation, as a metrics row."""
        if self.sampler is not None:
            self.sampler.set_epoch(epoch)
        stats = train_one_epoch(
            self.model, self.loaders["train"], self.optimizer, loss_fn=self.loss_fn,
            device=self.device, lr_scheduler=self.lr_scheduler,
            drop_scheduler=self.drop_scheduler, augment=self.augment,
            generator=self.generator, channels_last=self.spec.channels_last,
            amp_dtype=torch.bfloat16 if self.spec.amp and self.device.type == "cuda" else None,
            epoch=epoch + 1,
        )
        val = self.evaluate("val")
        return {
            "epoch": epoch + 1, "train_loss": stats.loss, "train_acc": stats.accuracy,
            "val_loss": val.loss, "val_acc": val.accuracy,
            "drop_rate": current_drop_rate(self.model),
            "lr": self.optimizer.param_groups[0]["lr"], "seconds": round(stats.seconds, 3),
        }

    def evaluate(self, split: str) -> Any:
        # Plain cross-entropy, so label smoothing does not make losses incomparable.
        return evaluate(self.model, self.loaders[split], loss_fn=self.eval_loss,
                        device=self.device, channels_last=self.spec.channels_last)

    def final_scores(self) -> dict[str, float]:
        """Test and train (eval mode, no dropout) loss and accuracy at the end."""
        test, train = self.evaluate("test"), self.evaluate("train_eval")
        return {"test_acc": test.accuracy, "test_loss": test.loss,
                "train_acc": train.accuracy, "train_loss": train.loss}
