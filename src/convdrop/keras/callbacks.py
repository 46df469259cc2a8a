"""A Keras callback that ramps every convdrop layer's rate from the global step.

DropBlock "does not work well" at a fixed rate (arXiv 1810.12890, sec. 3): the paper
ramps keep_prob linearly from 1 to its target. The schedules are convdrop's pure
functions of the step (:func:`convdrop.get_schedule`: constant, linear, cosine, step,
each with a warmup), shared with the PyTorch scheduler. The step is the model's own
``optimizer.iterations`` and each layer's target rate travels in its config, so a model
saved with ``model.save`` and loaded again resumes the ramp where it stopped, with a
fresh callback; nothing changes in ``call`` or at evaluation.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras
from keras import ops

from convdrop.keras.layers import DropBlockBase
from convdrop.ops import validate as v
from convdrop.placement import get_schedule

__all__ = ["DropRateScheduler", "convdrop_layers"]

Schedule = Callable[[int, int], float]


def convdrop_layers(model: keras.layers.Layer) -> list[DropBlockBase]:
    """Every convdrop layer inside ``model``, nested models and layers included."""
    return [layer for layer in model._flatten_layers(include_self=True, recursive=True)
            if isinstance(layer, DropBlockBase)]


def _iterations(model: keras.Model) -> int:
    """Optimizer steps taken so far (0 before the first); read between steps only."""
    optimizer = getattr(model, "optimizer", None)
    if optimizer is None:
        return 0
    return int(ops.convert_to_numpy(optimizer.iterations))


def _sync(model: keras.Model) -> None:
    """Under JAX, ``fit`` carries the variables outside the model between steps; syncing
    them back before a rate is set makes the trainer read the new rates at the next step.
    (Keras 3.15's ``Callback.model`` already syncs when read; this says it, and keeps it
    so if that changes.)"""
    sync = getattr(model, "jax_state_sync", None)
    if callable(sync):
        sync()


class DropRateScheduler(keras.callbacks.Callback):
    """``rate = target * schedule(step, total_steps)`` for every convdrop layer of the model.

    ``step`` is ``model.optimizer.iterations``: the batch run after ``k`` optimizer steps
    uses ``schedule(k)``. When training begins each layer's ``target_rate`` is recorded
    (its current ``rate`` if none is yet), and it is saved with the model; a model loaded
    from a ``.keras`` file and fitted again with a new callback continues the ramp.

    Args:
        schedule: "constant", "linear", "cosine", "step", or ``f(step, total_steps)``
            returning a factor in [0, 1].
        total_steps: optimizer steps until the target is reached (>= 1); later steps hold it.
        warmup_steps: with a named schedule, the rate stays 0 for this many steps and the
            schedule runs over the rest.
        options: options of a named schedule, e.g. ``levels=4`` for "step".

    A model with no convdrop layer raises ``ValueError`` when ``fit`` starts.
    """

    def __init__(self, schedule: str | Schedule, total_steps: int, *, warmup_steps: int = 0,
                 **options: Any) -> None:
        super().__init__()
        self.total_steps = v.check_positive_int(total_steps, "total_steps")
        if isinstance(schedule, str):
            self.schedule = get_schedule(schedule, warmup_steps=warmup_steps, **options)
        elif callable(schedule):
            if warmup_steps or options:
                raise ValueError(f"warmup_steps and options apply to a named schedule; put "
                                 f"them inside the callable {schedule!r} instead")
            self.schedule = schedule
        else:
            raise ValueError(f"schedule must be a name such as 'linear' or a callable "
                             f"f(step, total_steps) -> factor, got {schedule!r}")
        self._layers: list[DropBlockBase] = []
        self._step = 0
        self._epoch_start = 0

    @property
    def step_count(self) -> int:
        """Optimizer steps the current rates are for."""
        return self._step

    def factor(self) -> float:
        """``schedule(step, total_steps)``, checked to lie in [0, 1]."""
        value = self.schedule(self._step, self.total_steps)
        if not v.is_number(value) or not 0.0 <= value <= 1.0:
            raise ValueError(f"schedule {getattr(self.schedule, '__name__', self.schedule)!r} "
                             f"returned {value!r} at step {self._step}; expected a factor "
                             f"in [0, 1]")
        return float(value)

    def rates(self) -> dict[str, float]:
        """Layer name -> the rate it holds now (for logging)."""
        return {layer.name: layer.rate for layer in self._layers}

    def _apply(self) -> None:
        factor = self.factor()
        wanted = [(layer, layer.target_rate * factor) for layer in self._layers]
        changed = [(layer, rate) for layer, rate in wanted if layer.rate != rate]
        if changed:
            _sync(self.model)
            for layer, rate in changed:
                layer.rate = rate

    def on_train_begin(self, logs: dict | None = None) -> None:
        self._layers = convdrop_layers(self.model)
        if not self._layers:
            raise ValueError(f"model {self.model.name!r} has no convdrop.keras layer for "
                             f"DropRateScheduler to ramp; expected DropBlock1D/2D/3D layers")
        for layer in self._layers:
            if layer.target_rate is None:
                layer.target_rate = layer.rate
        self._step = _iterations(self.model)
        self._apply()

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        _sync(self.model)
        self._epoch_start = self._step = _iterations(self.model)

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        self._step = self._epoch_start + batch + 1
        self._apply()

    def __repr__(self) -> str:
        name = getattr(self.schedule, "__name__", repr(self.schedule))
        return (f"DropRateScheduler(schedule={name}, step={self._step}/{self.total_steps}, "
                f"layers={len(self._layers)})")
