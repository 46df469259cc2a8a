"""The scheduler: every regularizer's ``p`` driven from the training step.

DropBlock "does not work well" at a fixed rate (arXiv 1810.12890, sec. 3): the
paper ramps keep_prob linearly from 1 to its target over training. A schedule
(:mod:`convdrop.placement.schedules`) is a pure function ``f(step, total_steps) ->
factor in [0, 1]`` and every regularizer's ``p`` becomes ``target * factor``. The
training loop owns the step counter (:meth:`DropRateScheduler.step`); nothing
advances inside ``forward`` or in eval mode, and the step lives in ``state_dict`` so
a resumed run continues the ramp. Because the rates are a function of the step
alone, every DistributedDataParallel rank that steps the same number of times holds
the same rates.

Regularizers from other libraries (timm's ``DropBlock2d``/``DropPath``, torchvision's
``StochasticDepth``, torch's dropouts) are ramped with ``foreign=True``; otherwise the
scheduler says which ones it leaves alone. No silent footguns: a second scheduler on
modules a live one ramps is an error, a scheduler built after another one has ramped
a model down starts from the recorded targets, not the ramped-down rates, and sites
added to (or removed from) the model after the scheduler was built make :meth:`step`
raise until :meth:`DropRateScheduler.refresh` adopts them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from torch import nn

from convdrop.ops import validate as v
from convdrop.placement import driven as D
from convdrop.placement import foreign
from convdrop.placement.schedules import Schedule, resolve

__all__ = ["DropRateScheduler"]


class DropRateScheduler:
    """Ramp every regularizer's ``p`` from the step: ``p = target * schedule(step, total)``.

    At construction each regularizer's current ``p`` (times its ``scales`` entry) is
    recorded as its target and the step-0 rate is applied at once (0 for "linear"),
    so build one scheduler per model, before training; to resume, build it on the
    fresh model and call :meth:`load_state_dict`, which restores the targets too.
    Call :meth:`step` once per optimizer step. Evaluation never changes anything.

    The target is also kept on each module: building a scheduler on modules that a
    live one drives raises ``ValueError`` (call the old one's :meth:`release` first),
    and a scheduler built after an earlier one is gone starts from the targets that
    one recorded, not from the ramped-down rates. Sites added to or removed from the
    model after construction make :meth:`step` raise until :meth:`refresh`.

    Args:
        model_or_modules: a model (every convdrop regularizer in ``named_modules``;
            every known regularizer with ``foreign=True``), a list of regularizers
            (paths "0", "1", ...), or a dict path -> regularizer. A model with none
            raises ``ValueError`` (a silent no-op would hide a bug).
        schedule: "constant", "linear", "cosine", "step", or ``f(step, total_steps)``
            returning a factor in [0, 1]; see :func:`get_schedule` for warmup.
        total_steps: steps until the target is reached (>= 1); later steps hold it.
        scales: path prefix -> multiplier of the recorded target, e.g. ``{"layer3": 0.25}``;
            the longest matching prefix wins. convdrop's ResNets built with
            ``dropblock=p`` already give group 3 a target of p/4, so do not scale again.
        foreign: ramp regularizers of other libraries too (timm ``DropBlock2d`` and
            ``DropPath``, torchvision ``StochasticDepth``, ``nn.Dropout*``), through
            their own rate attribute (``p`` or ``drop_prob``). None (default) ramps
            convdrop's only and warns naming the others; False ramps convdrop's only,
            quietly. :attr:`not_driven` lists what is left alone.
    """

    def __init__(
        self,
        model_or_modules: nn.Module | Sequence[nn.Module] | Mapping[str, nn.Module],
        schedule: str | Schedule,
        total_steps: int,
        *,
        scales: Mapping[str, float] | None = None,
        foreign: bool | None = None,
    ) -> None:
        self.schedule = resolve(schedule)
        self.total_steps = v.check_positive_int(total_steps, "total_steps")
        if foreign not in (None, True, False):
            raise ValueError(f"foreign must be True, False or None, got {foreign!r}")
        self._foreign = foreign
        self._model = model_or_modules if isinstance(model_or_modules, nn.Module) else None
        self._modules, self._others = D.find(model_or_modules, foreign)
        self._scales = dict(scales or {})
        for key, scale in self._scales.items():
            v.check_number(scale, f"scales[{key!r}]", 0, math.inf, expected="a number >= 0")
        self._check_free(self._modules)
        self._targets = D.targets(self._modules, self._scales)
        D.check_scales_used(self._scales, self._modules)
        self._claim(self._modules)
        self._step = 0
        self._apply()

    def _check_free(self, modules: Mapping[str, nn.Module]) -> None:
        for path, module in modules.items():
            other = foreign.owner(module)
            if other is not None and other is not self:
                raise ValueError(
                    f"model_or_modules[{path!r}] is already ramped by {other!r} (target "
                    f"p={foreign.recorded_target(module)}, now {foreign.get_rate(module)}); "
                    f"keep stepping that scheduler, or call its release() first")

    def _claim(self, modules: Mapping[str, nn.Module]) -> None:
        for module in modules.values():
            foreign.claim(module, self, foreign.target_rate(module) or 0.0)

    @property
    def not_driven(self) -> dict[str, str]:
        """Path -> kind of every known regularizer in the model this scheduler leaves alone."""
        return {path: foreign.describe(m).kind for path, m in self._others.items()}

    def refresh(self) -> dict[str, list[str]]:
        """Adopt sites added to the model since construction (their ``p`` as target) and
        drop removed ones; returns ``{"added": [...], "removed": [...]}``."""
        if self._model is None:
            raise ValueError("refresh needs a scheduler built on a model, not on a list or "
                             "dict of regularizers")
        now = D.driven(D.known(self._model), bool(self._foreign))
        added = {p: m for p, m in now.items() if self._modules.get(p) is not m}
        removed = [p for p, m in self._modules.items() if now.get(p) is not m]
        self._check_free(added)
        for path in removed:
            foreign.unclaim(self._modules.pop(path))
            self._targets.pop(path)
        self._targets.update(D.targets(added, self._scales))
        self._claim(added)
        self._modules.update(added)
        self._apply()
        return {"added": sorted(added), "removed": sorted(removed)}

    def release(self) -> None:
        """Stop driving: every regularizer gets its unscaled target back, and another
        scheduler may take the modules over."""
        for module in self._modules.values():
            target = foreign.recorded_target(module)
            if foreign.owner(module) is self and target is not None:
                foreign.set_rate(module, target)
                foreign.unclaim(module)

    def _check_layout(self) -> None:
        if self._model is None:
            return
        now = D.driven(D.known(self._model), bool(self._foreign))
        added = sorted(p for p, m in now.items() if self._modules.get(p) is not m)
        removed = sorted(p for p, m in self._modules.items() if now.get(p) is not m)
        if added or removed:
            raise ValueError(
                f"model: sites changed after this DropRateScheduler was built (added "
                f"{added}, removed {removed}), so its rates would not match the model; "
                f"call scheduler.refresh() to adopt the change")

    @property
    def step_count(self) -> int:
        """Number of :meth:`step` calls so far (restored by :meth:`load_state_dict`)."""
        return self._step

    @property
    def targets(self) -> dict[str, float]:
        """Path -> target ``p`` reached at ``total_steps``."""
        return dict(self._targets)

    def current_factor(self) -> float:
        """``schedule(step, total_steps)``, checked to lie in [0, 1]."""
        factor = self.schedule(self._step, self.total_steps)
        if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not (
            0.0 <= factor <= 1.0
        ):
            raise ValueError(
                f"schedule {getattr(self.schedule, '__name__', self.schedule)!r} returned "
                f"{factor!r} at step {self._step}; expected a factor in [0, 1]"
            )
        return float(factor)

    def rates(self) -> dict[str, float]:
        """Path -> the ``p`` each regularizer holds now (for logging)."""
        return {path: foreign.get_rate(module) for path, module in self._modules.items()}

    def step(self) -> None:
        """Advance one step and set every ``p``; call it from the training loop only.

        Raises ``ValueError`` if the model's sites changed since construction (see
        :meth:`refresh`).
        """
        self._check_layout()
        self._step += 1
        self._apply()

    def _apply(self) -> None:
        factor = self.current_factor()
        for path, module in self._modules.items():
            foreign.set_rate(module, self._targets[path] * factor)

    def state_dict(self) -> dict[str, Any]:
        """``{"step", "total_steps", "targets"}``: everything a resume needs."""
        return {"step": self._step, "total_steps": self.total_steps, "targets": self.targets}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore the step, total and targets, and apply the rates of that step at once."""
        missing = {"step", "total_steps", "targets"} - set(state)
        if missing:
            raise ValueError(f"state is missing keys {sorted(missing)}; got {sorted(state)}")
        targets = dict(state["targets"])
        if set(targets) != set(self._modules):
            raise ValueError(
                f"state targets cover paths {sorted(targets)} but this scheduler drives "
                f"{sorted(self._modules)}; expected the same model layout"
            )
        step_ = v.check_nonnegative_int(state["step"], "state['step']")
        self.total_steps = v.check_positive_int(state["total_steps"], "state['total_steps']")
        self._targets = {k: v.check_p(p, f"state['targets'][{k!r}]") for k, p in targets.items()}
        for path, module in self._modules.items():
            scale = D.scale_of(path, self._scales)[1]
            if scale > 0:
                foreign.claim(module, self, min(1.0, self._targets[path] / scale))
        self._step = step_
        self._apply()

    def __repr__(self) -> str:
        name = getattr(self.schedule, "__name__", repr(self.schedule))
        return (f"DropRateScheduler(schedule={name}, step={self._step}/{self.total_steps}, "
                f"sites={len(self._modules)})")
