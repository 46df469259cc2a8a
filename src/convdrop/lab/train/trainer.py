"""The objects of one run, built from a spec, and its epoch loop with checkpoints.

``Trainer.create`` turns (spec, method, seed) into a model, optimizer, LR and
drop-rate schedulers, loss, augmentation and loaders; ``fit`` trains epoch by
epoch, writing ``metrics.csv`` and ``checkpoint.pt`` atomically after each one, and
resumes from the checkpoint when it exists. The drop-rate scheduler is stepped per
batch by the engine, so rates depend on the global step only.

Under torchrun (a :class:`convdrop.lab.train.distributed.Dist` with ``world_size`` W > 1) the
model is wrapped in DistributedDataParallel, ``spec.batch_size`` is the global batch
(B / W per rank), a ``DistributedSampler`` seeded with the run seed shards the
training set (``drop_last=False``: it pads with a few repeated examples so ranks
take equal steps, and training metrics count those), evaluation covers exact
shards whose sums are all-reduced, and only rank 0 writes. Checkpoints hold the
bare model's weights, so they load at any world size, plus every rank's RNG state.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DistributedSampler

from convdrop import _io
from convdrop._devices import resolve_device
from convdrop.errors import RunFolderError
from convdrop.lab.spec.experiment import ExperimentSpec
from convdrop.lab.spec.methods import build_recipe
from convdrop.lab.train import distributed as dd
from convdrop.lab.train.checkpoint import read_checkpoint, save_checkpoint
from convdrop.lab.train.engine import (
    Augment,
    EvalStats,
    evaluate,
    make_loss,
    make_lr_scheduler,
    make_optimizer,
    seed_everything,
    train_one_epoch,
)
from convdrop.lab.train.run_data import load_run_data, make_loaders, on_cuda, worker_errors
from convdrop.lab.train.store import METRIC_FIELDS, Progress, RunPaths
from convdrop.layers import Regularizer


def current_drop_rate(model: nn.Module) -> float:
    """The largest ``p`` of the model's regularizers right now (0 if it has none)."""
    return max((m.p for m in model.modules() if isinstance(m, Regularizer)), default=0.0)


@dataclass
class Trainer:
    """Everything one run trains with; ``dist`` spans several processes only under torchrun."""

    spec: ExperimentSpec
    method: str
    seed: int
    model: nn.Module  # what training calls: DistributedDataParallel under torchrun
    optimizer: torch.optim.Optimizer
    lr_scheduler: Any
    drop_scheduler: Any
    loss_fn: nn.Module
    augment: Augment
    loaders: dict[str, Any]
    device: torch.device
    generator: torch.Generator
    dist: dd.Dist = field(default_factory=dd.Dist)
    sampler: DistributedSampler | None = None
    eval_loss: nn.Module = field(default_factory=make_loss)
    fresh_keys: tuple[str, ...] = ()  # --weights tensors left fresh (the result names them)
    data_listing: str | None = None  # an image folder's listing (see Datasets.listing)

    @property
    def world_size(self) -> int:
        return self.dist.world_size

    @property
    def rank(self) -> int:
        return self.dist.rank

    @property
    def is_writer(self) -> bool:
        return self.dist.is_writer

    @property
    def channels_last(self) -> bool:
        return on_cuda(self.spec.channels_last, self.device)

    @property
    def bare_model(self) -> nn.Module:
        """The model without its DistributedDataParallel wrapper."""
        return dd.unwrap(self.model)

    @staticmethod
    def create(spec: ExperimentSpec, method: str, seed: int, *, device: str | None = None,
               dist: dd.Dist | None = None, sync_bn: bool = False,
               cache_dir: Path | None = None) -> Trainer:
        """Build the trainer of ``method`` with ``seed``; ``dist`` places it in a torchrun job;
        a streamed folder caches its index and statistics in ``cache_dir``."""
        dist = dist or dd.Dist(device=device or spec.device)
        generator = seed_everything(seed)  # the same on every rank: identical init
        data = load_run_data(spec, seed, cache_dir)
        target = resolve_device(dist.device if dist.enabled else device or spec.device)
        loaders, sampler = make_loaders(data, spec, dist, generator, seed, target)
        recipe = build_recipe(spec, method, data.num_classes, data.in_channels)
        model = recipe.model.to(target)
        if on_cuda(spec.channels_last, target):
            model = model.to(memory_format=torch.channels_last)
        steps = spec.epochs * len(loaders["train"])
        optimizer = make_optimizer(model, spec.optimizer, lr=spec.lr,
                                   weight_decay=spec.weight_decay)
        drop_scheduler = recipe.drop_scheduler(model, steps)  # on the bare model: plain paths
        trained = dd.wrap_model(model, dist, sync_bn=sync_bn)
        if dist.enabled:
            generator = dd.reseed_for_rank(seed, dist.rank)  # independent masks and crops
        return Trainer(
            spec=spec, method=method, seed=seed, model=trained, optimizer=optimizer,
            lr_scheduler=make_lr_scheduler(optimizer, spec.lr_schedule, steps),
            drop_scheduler=drop_scheduler, loss_fn=make_loss(recipe.label_smoothing),
            augment=recipe.augment(spec.augment, data.streaming), loaders=loaders, device=target,
            generator=generator, dist=dist, sampler=sampler, fresh_keys=recipe.fresh_keys,
            data_listing=data.listing,
        )

    def state_dict(self, epoch: int) -> dict[str, Any]:
        """Everything a resume needs after ``epoch`` finished epochs (collective under torchrun)."""
        rng = {"generator": self.generator.get_state(), "torch_rng": torch.get_rng_state()}
        state = {
            "epoch": epoch,
            "run_key": self.spec.run_key(self.method),
            "seed": self.seed,
            "world_size": self.world_size,
            "data_listing": self.data_listing,
            "model": self.bare_model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "lr_scheduler": self.lr_scheduler.state_dict(),
            **rng,
        }
        if self.dist.enabled:
            state["rank_rng"] = dd.all_gather_objects(rng, self.dist)
        if self.drop_scheduler is not None:
            state["drop_scheduler"] = self.drop_scheduler.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> int:
        """Restore a checkpoint; returns the number of finished epochs."""
        for key, mine in (("run_key", self.spec.run_key(self.method)), ("seed", self.seed)):
            if key in state and state[key] != mine:
                raise RunFolderError(
                    f"the checkpoint was written by a run with {key} {state[key]!r}, but this "
                    f"run has {key} {mine!r}; use the same settings, or another --out"
                )
        self.bare_model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.lr_scheduler.load_state_dict(state["lr_scheduler"])
        if self.drop_scheduler is not None:
            self.drop_scheduler.load_state_dict(state["drop_scheduler"])
        epoch = int(state["epoch"])
        self._restore_rng(state, epoch)
        return epoch

    def _restore_rng(self, state: dict[str, Any], epoch: int) -> None:
        ranks = state.get("rank_rng")
        if self.dist.enabled and (ranks is None or len(ranks) != self.world_size):
            # Another world size wrote it: fresh per-rank streams (not bit-identical).
            self.generator = dd.reseed_for_rank(self.seed, self.rank, epoch=epoch)
            return
        mine = ranks[self.rank] if self.dist.enabled else state
        self.generator.set_state(mine["generator"])
        torch.set_rng_state(mine["torch_rng"])

    def fit(self, paths: RunPaths, *, progress: Progress | None = None) -> list[dict[str, Any]]:
        """Train the remaining epochs; returns every epoch's metrics row."""
        start, rows = self.resume_from(paths)
        epochs = self.spec.epochs
        if progress:
            progress(start, epochs)
        for epoch in range(start, epochs):
            rows.append(self.train_epoch(epoch))
            state = self.state_dict(epoch + 1)
            if self.is_writer:
                _io.write_csv(paths.metrics, rows, METRIC_FIELDS)
                save_checkpoint(paths.checkpoint, state)
            dd.barrier(self.dist)  # no rank moves on before the checkpoint is on disk
            if progress:
                progress(epoch + 1, epochs)
        return rows

    def resume_from(self, paths: RunPaths) -> tuple[int, list[dict[str, Any]]]:
        """Load the run's checked checkpoint, if any: (finished epochs, their metrics rows)."""
        found = read_checkpoint(paths, run_key=self.spec.run_key(self.method), seed=self.seed,
                                epochs=self.spec.epochs, listing=self.data_listing,
                                data=self.spec.data)
        if found is None:
            return 0, []
        state, rows = found
        try:
            return self.load_state_dict(state), rows
        except RunFolderError:
            raise
        except (KeyError, TypeError, ValueError, RuntimeError, IndexError) as err:
            problem = f"{type(err).__name__}: {err}".splitlines()[0][:200]
            raise paths.broken(paths.checkpoint, f"does not fit this run's model or "
                               f"optimizer ({problem})") from None

    def train_epoch(self, epoch: int) -> dict[str, Any]:
        """One epoch of training plus validation, as a metrics row (for the whole job)."""
        with worker_errors():
            return self._train_epoch(epoch)

    def _train_epoch(self, epoch: int) -> dict[str, Any]:
        if self.sampler is not None:
            self.sampler.set_epoch(epoch)
        stats = train_one_epoch(
            self.model, self.loaders["train"], self.optimizer, loss_fn=self.loss_fn,
            device=self.device, lr_scheduler=self.lr_scheduler,
            drop_scheduler=self.drop_scheduler, augment=self.augment,
            generator=self.generator, channels_last=self.channels_last,
            amp_dtype=torch.bfloat16 if on_cuda(self.spec.amp, self.device) else None,
            epoch=epoch + 1,
        )
        dd.broadcast_buffers(self.model, self.dist)
        train_loss, train_acc = self._global(stats.loss, stats.accuracy,
                                             len(self.loaders["train"].sampler))
        # the job's rate: every rank's images over this rank's epoch time
        images_per_s = dd.all_reduce_sums([stats.images], self.dist)[0] / max(stats.seconds,
                                                                              1e-9)
        val, clean = self.evaluate("val"), self.evaluate("train_curve")
        return {
            "epoch": epoch + 1, "train_loss": train_loss, "train_acc": train_acc,
            "train_eval_acc": clean.accuracy, "val_loss": val.loss, "val_acc": val.accuracy,
            "drop_rate": current_drop_rate(self.model),
            "lr": self.optimizer.param_groups[0]["lr"], "seconds": round(stats.seconds, 3),
            "images_per_s": round(images_per_s, 1),
        }

    def _global(self, loss: float, accuracy: float, count: int) -> tuple[float, float]:
        """Means over every rank's examples from this rank's means over ``count`` examples."""
        if not self.dist.enabled:
            return loss, accuracy
        loss_sum, correct, total = dd.all_reduce_sums(
            [loss * count, accuracy * count, count], self.dist)
        return loss_sum / total, round(correct) / total

    def evaluate(self, split: str) -> EvalStats:
        """Loss and accuracy on a whole split (this rank's shard, all-reduced under torchrun)."""
        loader = self.loaders[split]
        count = len(loader.dataset)
        if count == 0 and self.dist.enabled:  # more ranks than examples: nothing to add
            stats = EvalStats(0.0, 0.0)
        else:
            # Plain cross-entropy, so label smoothing does not make losses incomparable.
            with worker_errors():
                stats = evaluate(self.bare_model, loader, loss_fn=self.eval_loss,
                                 device=self.device, channels_last=self.channels_last)
        return EvalStats(*self._global(stats.loss, stats.accuracy, count))

    def final_scores(self) -> dict[str, float]:
        """Test and train (eval mode, no dropout) loss and accuracy at the end."""
        test, train = self.evaluate("test"), self.evaluate("train_eval")
        return {"test_acc": test.accuracy, "test_loss": test.loss,
                "train_acc": train.accuracy, "train_loss": train.loss}
