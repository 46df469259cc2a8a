"""Which regularizers a :class:`DropRateScheduler` drives, and their scaled targets.

A model's regularizers are found by :func:`convdrop.placement.foreign.describe`:
convdrop's always, other libraries' with ``foreign=True``. ``scales`` multiply targets
by path prefix, with wrapper prefixes (DDP's ``module.``, ``torch.compile``'s
``_orig_mod.``) ignored so scales written for the bare model still match.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence

from torch import nn

from convdrop.ops import validate as v
from convdrop.placement import foreign

__all__ = ["check_scales_used", "driven", "find", "known", "scale_of", "targets"]


def known(model: nn.Module) -> dict[str, nn.Module]:
    return {path: m for path, m in model.named_modules() if foreign.describe(m) is not None}


def driven(known: Mapping[str, nn.Module], include_foreign: bool) -> dict[str, nn.Module]:
    return {path: m for path, m in known.items()
            if include_foreign or foreign.describe(m).source == "convdrop"}


def _listed(others: Mapping[str, nn.Module], limit: int = 3) -> str:
    shown = [f"{path} ({type(m).__name__})" for path, m in list(others.items())[:limit]]
    more = f" and {len(others) - limit} more" if len(others) > limit else ""
    return ", ".join(shown) + more


def _from_model(model: nn.Module, include: bool | None
                ) -> tuple[dict[str, nn.Module], dict[str, nn.Module]]:
    every = known(model)
    found = driven(every, bool(include))
    others = {path: m for path, m in every.items() if path not in found}
    if not found:
        hint = (f"; it has {len(others)} from other libraries: {_listed(others)}; pass "
                f"foreign=True to ramp them" if others else
                "; add some with convdrop.regularize or a model option such as dropblock=p")
        raise ValueError(f"model_or_modules has no convdrop regularizers (DropBlock1d/2d/3d, "
                         f"SpatialDropout, Dropout, DropPath) in {type(model).__name__}{hint}")
    if others and include is None:
        warnings.warn(f"DropRateScheduler ramps {len(found)} convdrop regularizers and leaves "
                      f"{len(others)} others at their rate: {_listed(others)}; pass "
                      f"foreign=True to ramp them too, or foreign=False to say you mean it",
                      stacklevel=4)
    return found, others


def find(model_or_modules: nn.Module | Sequence[nn.Module] | Mapping[str, nn.Module],
          include: bool | None) -> tuple[dict[str, nn.Module], dict[str, nn.Module]]:
    """(path -> driven regularizer, path -> known regularizer left alone): from a model's
    ``named_modules``, a mapping, or a list (by index)."""
    if isinstance(model_or_modules, nn.Module):
        return _from_model(model_or_modules, include)
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
        info = foreign.describe(module) if isinstance(module, nn.Module) else None
        if info is None or (info.source != "convdrop" and not include):
            raise ValueError(
                f"model_or_modules[{path!r}] must be a convdrop Regularizer (or, with "
                f"foreign=True, a timm/torchvision/torch one), got {type(module).__name__}"
            )
    return dict(items), {}


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


def scale_of(path: str, scales: Mapping[str, float]) -> tuple[str | None, float]:
    """The longest key of ``scales`` that is ``path`` or a dotted prefix of it, and its scale."""
    bare = _bare(path)
    keys = [k for k in scales if bare == k or bare.startswith(k + ".")]
    if not keys:
        return None, 1.0
    key = max(keys, key=len)
    return key, scales[key]


def targets(found: Mapping[str, nn.Module], scales: Mapping[str, float]) -> dict[str, float]:
    targets = {}
    for path, module in found.items():
        scale = scale_of(path, scales)[1]
        base = foreign.target_rate(module) or 0.0
        targets[path] = v.check_p(base * scale, f"target p of {path!r} (p * scale)")
    return targets


def check_scales_used(scales: Mapping[str, float], found: Mapping[str, nn.Module]) -> None:
    unused = sorted(k for k in scales if not any(scale_of(p, {k: 1.0})[0] for p in found))
    if unused:
        raise ValueError(
            f"scales keys {unused} match no regularizer path; expected prefixes of "
            f"{sorted(found)}"
        )
