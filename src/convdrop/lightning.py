"""A Lightning callback that ramps convdrop's drop rates over a ``Trainer.fit``.

It wraps :class:`convdrop.DropRateScheduler` (so placement, ``scales``, ``foreign``
regularizers and the footgun checks are the same as in a hand-written loop) and keeps
it in step with ``trainer.global_step``, Lightning's count of optimizer steps: with
``accumulate_grad_batches=n`` the rate moves once per n batches, as the weights do. The
scheduler's state (step, total steps, targets) is saved in Lightning checkpoints, so
``Trainer.fit(ckpt_path=...)`` continues the ramp exactly where it stopped.

Needs the ``lightning`` extra (``pip install 'convdrop[lightning]'``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from convdrop._extras import require

require("lightning", "convdrop.lightning", ("lightning",))

import lightning.pytorch as pl  # noqa: E402

from convdrop.ops import validate as v  # noqa: E402
from convdrop.placement import DropRateScheduler, get_schedule  # noqa: E402

__all__ = ["DropRateCallback"]

Schedule = Callable[[int, int], float]


class DropRateCallback(pl.Callback):
    """``p = target * schedule(global_step, total_steps)`` for every regularizer of the module.

    Args:
        schedule: "constant", "linear", "cosine", "step", or ``f(step, total_steps)``.
        total_steps: optimizer steps until the target is reached; None (default) takes
            ``trainer.estimated_stepping_batches`` when the first fit starts (accumulation
            counted). It is saved in checkpoints, so a resumed fit keeps the same ramp.
        warmup_steps, options: for a named schedule, as :func:`convdrop.get_schedule`.
        scales, foreign: as :class:`convdrop.DropRateScheduler`.

    The scheduler is built on the ``LightningModule`` when the fit starts (each
    regularizer's ``p`` then is its target) and is available as :attr:`scheduler`.
    """

    def __init__(self, schedule: str | Schedule = "linear", total_steps: int | None = None, *,
                 warmup_steps: int = 0, scales: dict[str, float] | None = None,
                 foreign: bool | None = None, **options: Any) -> None:
        super().__init__()
        if isinstance(schedule, str):
            self._schedule: Schedule = get_schedule(schedule, warmup_steps=warmup_steps,
                                                    **options)
        elif callable(schedule) and not (warmup_steps or options):
            self._schedule = schedule
        else:
            raise ValueError(f"schedule must be a name such as 'linear', or a callable "
                             f"f(step, total_steps) without warmup_steps or options, got "
                             f"{schedule!r}")
        self.total_steps = None if total_steps is None else v.check_positive_int(
            total_steps, "total_steps")
        self._scales, self._foreign = scales, foreign
        self.scheduler: DropRateScheduler | None = None
        self._module: pl.LightningModule | None = None
        self._pending: dict[str, Any] | None = None

    def _total(self, trainer: pl.Trainer) -> int:
        if self.total_steps is not None:
            return self.total_steps
        estimate = trainer.estimated_stepping_batches
        if estimate == float("inf") or estimate < 1:
            raise ValueError(f"total_steps: the trainer cannot estimate its optimizer steps "
                             f"(got {estimate}); pass DropRateCallback(total_steps=...)")
        return int(estimate)

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.scheduler is None or self._module is not pl_module:
            if self.scheduler is not None:
                self.scheduler.release()
            self.scheduler = DropRateScheduler(pl_module, self._schedule, self._total(trainer),
                                               scales=self._scales, foreign=self._foreign)
            self._module = pl_module
        if self._pending is not None:
            self.scheduler.load_state_dict(self._pending)
            self._pending = None

    def _catch_up(self, trainer: pl.Trainer) -> None:
        """Step the scheduler until it has seen every optimizer step the trainer made."""
        assert self.scheduler is not None
        while self.scheduler.step_count < trainer.global_step:
            self.scheduler.step()

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._catch_up(trainer)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           outputs: Any, batch: Any, batch_idx: int) -> None:
        self._catch_up(trainer)

    def state_dict(self) -> dict[str, Any]:
        """The scheduler's state: step, total steps and targets (empty before a fit)."""
        return {} if self.scheduler is None else self.scheduler.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the ramp; applied when the fit starts if the scheduler is not built yet."""
        if not state_dict:
            return
        if self.scheduler is None:
            self._pending = dict(state_dict)
        else:
            self.scheduler.load_state_dict(state_dict)
