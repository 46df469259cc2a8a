"""Drop-rate schedules: pure functions of the step, and a scheduler that applies them.

DropBlock "does not work well" at a fixed rate (arXiv 1810.12890, sec. 3): the
paper ramps keep_prob linearly from 1 to its target over training. Here a schedule
is a pure function ``f(step, total_steps) -> factor in [0, 1]`` and every
regularizer's ``p`` becomes ``target * factor``. The training loop owns the step
counter (:meth:`DropRateScheduler.step`); nothing advances inside ``forward`` or in
eval mode, and the step lives in ``state_dict`` so a resumed run continues the ramp.
Because the rates are a function of the step alone, every DistributedDataParallel
rank that steps the same number of times holds the same rates.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from torch import nn

from convdrop.layers import Regularizer
from convdrop.ops import validate as v

__all__ = [
    "SCHEDULES", "DropRateScheduler", "Schedule", "constant", "cosine", "get_schedule",
    "linear", "step",
]

Schedule = Callable[[int, int], float]


def _progress(step: int, total_steps: int) -> float:
    """Fraction of the ramp done, clamped to [0, 1]: steps past the end hold the target."""
    v.check_nonnegative_int(step, "step")
    v.check_positive_int(total_steps, "total_steps")
    return min(step, total_steps) / total_steps


def constant(step: int, total_steps: int) -> float:
    """Factor 1 at every step: the target rate from the start."""
    _progress(step, total_steps)
    return 1.0


def linear(step: int, total_steps: int) -> float:
    """The paper's ramp: ``step / total_steps``, so keep_prob falls linearly from 1."""
    return _progress(step, total_steps)


def cosine(step: int, total_steps: int) -> float:
    """Half-cosine ramp from 0 to 1: slow start, fastest mid-way, slow finish."""
    return 0.5 * (1.0 - math.cos(math.pi * _progress(step, total_steps)))


def step(step: int, total_steps: int, *, levels: int = 4) -> float:
    """Staircase ramp: ``floor(levels * step / total_steps) / levels``.

    With ``levels=4`` the factor is 0, 0.25, 0.5, 0.75 over the four quarters of
    training and 1 from ``total_steps`` on.
    """
    v.check_positive_int(levels, "levels")
    return math.floor(levels * _progress(step, total_steps)) / levels


SCHEDULES: dict[str, Callable[..., float]] = {
    "constant": constant, "linear": linear, "cosine": cosine, "step": step,
}


def get_schedule(name: str, *, warmup_steps: int = 0, **options: Any) -> Schedule:
    """The schedule called ``name`` as ``f(step, total_steps)``, with options bound.

    Args:
        name: one of ``SCHEDULES``: "constant", "linear", "cosine", "step".
        warmup_steps: the factor stays 0 (regularizer off) for this many steps, then
            the schedule runs over the remaining ``total_steps - warmup_steps`` steps.
            With "constant" this is a late start; with "linear" a delayed ramp.
        options: keyword options of that schedule, e.g. ``levels`` for "step".
    """
    if name not in SCHEDULES:
        raise ValueError(f"schedule must be one of {sorted(SCHEDULES)}, got {name!r}")
    v.check_nonnegative_int(warmup_steps, "warmup_steps")
    if options and name != "step":
        raise ValueError(f"schedule {name!r} takes no options, got {sorted(options)}")
    unknown = set(options) - {"levels"}
    if unknown:
        raise ValueError(f"schedule 'step' takes only 'levels', got {sorted(unknown)}")
    base = SCHEDULES[name]

    def schedule(at: int, total_steps: int) -> float:
        _progress(at, total_steps)
        if warmup_steps == 0:
            return base(at, total_steps, **options)
        if warmup_steps >= total_steps:
            raise ValueError(
                f"warmup_steps must be < total_steps, got {warmup_steps} >= {total_steps}"
            )
        if at < warmup_steps:
            return 0.0
        return base(at - warmup_steps, total_steps - warmup_steps, **options)

    schedule.__name__ = name if warmup_steps == 0 else f"{name}+warmup{warmup_steps}"
    return schedule


def _resolve(schedule: str | Schedule) -> Schedule:
    if isinstance(schedule, str):
        return get_schedule(schedule)
    if not callable(schedule):
        raise ValueError(
            f"schedule must be a name in {sorted(SCHEDULES)} or a callable "
            f"f(step, total_steps) -> factor, got {schedule!r}"
        )
    return schedule


def _find(model_or_modules: nn.Module | Sequence[nn.Module] | Mapping[str, nn.Module]
          ) -> dict[str, Regularizer]:
    """Path -> regularizer: from a model's ``named_modules``, a mapping, or a list (by index)."""
    if isinstance(model_or_modules, nn.Module):
        found = {path: m for path, m in model_or_modules.named_modules()
                 if isinstance(m, Regularizer)}
        if not found:
            raise ValueError(
                f"model_or_modules has no convdrop regularizers (DropBlock1d/2d/3d, "
                f"SpatialDropout, Dropout) in {type(model_or_modules).__name__}; add some with "
                f"convdrop.regularize or a model option such as dropblock=p"
            )
        return found
    if isinstance(model_or_modules, Mapping):
        items = list(model_or_modules.items())
    elif isinstance(model_or_modules, Sequence) and not isinstance(model_or_modules, str):
        items = [(str(i), m) for i, m in enumerate(model_or_modules)]
    else:
        raise ValueError(
            f"model_or_modules must be an nn.Module, a list or a dict of convdrop "
            f"regularizers, got {type(model_or_modules).__name__}"
        )
    if not items:
        raise ValueError("model_or_modules is an empty collection; expected regularizers")
    for path, module in items:
        if not isinstance(module, Regularizer):
            raise ValueError(
                f"model_or_modules[{path!r}] must be a convdrop Regularizer, "
                f"got {type(module).__name__}"
            )
    return dict(items)


_WRAPPERS = ("module.", "_orig_mod.")  # DistributedDataParallel, torch.compile


def _bare(path: str) -> str:
    """``path`` without wrapper prefixes, so scales written for the bare model still match."""
    stripped = True
    while stripped:
        stripped = False
        for prefix in _WRAPPERS:
            if path.startswith(prefix):
                path, stripped = path[len(prefix):], True
    return path


def _scale_of(path: str, scales: Mapping[str, float]) -> tuple[str | None, float]:
    """The longest key of ``scales`` that is ``path`` or a dotted prefix of it, and its scale."""
    bare = _bare(path)
    keys = [k for k in scales if bare == k or bare.startswith(k + ".")]
    if not keys:
        return None, 1.0
    key = max(keys, key=len)
    return key, scales[key]


def _targets(found: Mapping[str, Regularizer], scales: Mapping[str, float] | None
             ) -> dict[str, float]:
    scales = dict(scales or {})
    for key, scale in scales.items():
        v.check_number(scale, f"scales[{key!r}]", 0, math.inf, expected="a number >= 0")
    targets = {}
    for path, module in found.items():
        scale = _scale_of(path, scales)[1]
        targets[path] = v.check_p(module.p * scale, f"target p of {path!r} (p * scale)")
    unused = sorted(k for k in scales if not any(_scale_of(p, {k: 1.0})[0] for p in found))
    if unused:
        raise ValueError(
            f"scales keys {unused} match no regularizer path; expected prefixes of "
            f"{sorted(found)}"
        )
    return targets


class DropRateScheduler:
    """Ramp every regularizer's ``p`` from the step: ``p = target * schedule(step, total)``.

    At construction each regularizer's current ``p`` (times its ``scales`` entry) is
    recorded as its target and the step-0 rate is applied at once (0 for "linear"),
    so build one scheduler per model, before training; to resume, build it on the
    fresh model and call :meth:`load_state_dict`, which restores the targets too.
    Call :meth:`step` once per optimizer step. Evaluation never changes anything.

    Args:
        model_or_modules: a model (every convdrop ``Regularizer`` in ``named_modules``),
            a list of regularizers (paths "0", "1", ...), or a dict path -> regularizer.
            A model with none raises ``ValueError`` (a silent no-op would hide a bug).
        schedule: "constant", "linear", "cosine", "step", or ``f(step, total_steps)``
            returning a factor in [0, 1]; see :func:`get_schedule` for warmup.
        total_steps: steps until the target is reached (>= 1); later steps hold it.
        scales: path prefix -> multiplier of the recorded target, e.g. ``{"layer3": 0.25}``;
            the longest matching prefix wins. convdrop's ResNets built with
            ``dropblock=p`` already give group 3 a target of p/4, so do not scale again.
    """

    def __init__(
        self,
        model_or_modules: nn.Module | Sequence[Regularizer] | Mapping[str, Regularizer],
        schedule: str | Schedule,
        total_steps: int,
        *,
        scales: Mapping[str, float] | None = None,
    ) -> None:
        self.schedule = _resolve(schedule)
        self.total_steps = v.check_positive_int(total_steps, "total_steps")
        self._modules = _find(model_or_modules)
        self._targets = _targets(self._modules, scales)
        self._step = 0
        self._apply()

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
        return {path: module.p for path, module in self._modules.items()}

    def step(self) -> None:
        """Advance one step and set every ``p``; call it from the training loop only."""
        self._step += 1
        self._apply()

    def _apply(self) -> None:
        factor = self.current_factor()
        for path, module in self._modules.items():
            module.p = self._targets[path] * factor

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
        self._step = step_
        self._apply()

    def __repr__(self) -> str:
        name = getattr(self.schedule, "__name__", repr(self.schedule))
        return (f"DropRateScheduler(schedule={name}, step={self._step}/{self.total_steps}, "
                f"sites={len(self._modules)})")
