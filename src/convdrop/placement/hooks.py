"""The hooks that attach a site to its target, and what tracers see of them.

``regularize`` (:mod:`convdrop.placement.attach`) registers an :class:`ApplySite` on each
target; it calls the regularizer its host holds as a child. Under ``torch.fx`` symbolic
tracing the hook records that regularizer as one ``call_module`` node; a target from
``torch.nn`` (a leaf to fx, whose hooks fx never runs) is marked so fx traces through it.
``torch.jit.script`` cannot compile hooks, and :class:`TorchScriptSiteError` says so.
"""

from __future__ import annotations

import torch
import torch.fx
from torch import nn

__all__ = ["ApplySite", "TorchScriptSiteError", "inserted_modules", "mark_for_fx", "probe",
           "site_hooks", "unmark_for_fx"]


class TorchScriptSiteError(AttributeError):
    """``torch.jit.script`` met a site hook, which it cannot compile."""


def _apply(regularizer: nn.Module, x: object, what: str) -> object:
    if isinstance(x, torch.fx.Proxy):  # symbolic tracing: one node that calls the layer
        tracer = x.tracer
        return tracer.create_proxy("call_module", tracer.path_of_module(regularizer), (x,), {})
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"site needs a tensor {what}, got {type(x).__name__}")
    return regularizer(x)


class ApplySite:
    """Forward (pre-)hook that runs ``host.<name>``; picklable and deepcopy-safe."""

    def __init__(self, host: nn.Module, name: str, position: str) -> None:
        self.host, self.name, self.position = host, name, position

    @property
    def __name__(self) -> str:  # TorchScript compiles hooks by name: say why it cannot
        raise TorchScriptSiteError(
            f"torch.jit.script cannot compile the forward hook of convdrop site "
            f"{self.name!r}; call convdrop.unregularize(model) before scripting (sites do "
            f"nothing in eval mode), or use torch.compile / torch.export")

    def __call__(self, module: nn.Module, args: tuple, output: object = None) -> object:
        regularizer = getattr(self.host, self.name)
        if self.position == "before":
            if not args:
                raise ValueError(f"site {self.name!r} needs a tensor as first positional input")
            return (_apply(regularizer, args[0], f"as first input of {self.name!r}"),
                    *args[1:])
        return _apply(regularizer, output, f"output for {self.name!r}")


_FX_MARK = "convdrop.placement.site"  # an instance __module__ fx does not take for a leaf


def _is_fx_leaf(module: nn.Module) -> bool:
    name = type(module).__module__
    return name.startswith(("torch.nn", "torch.ao.nn")) and not isinstance(module, nn.Sequential)


def mark_for_fx(target: nn.Module) -> None:
    if _is_fx_leaf(target):
        target.__dict__["__module__"] = _FX_MARK


def unmark_for_fx(target: nn.Module) -> None:
    if target.__dict__.get("__module__") == _FX_MARK and not site_hooks(target):
        del target.__dict__["__module__"]


def site_hooks(module: nn.Module) -> list[tuple[dict, int, ApplySite]]:
    """(hook table, key, hook) of every site hook ``regularize`` registered on ``module``."""
    found = []
    for table in (module._forward_hooks, module._forward_pre_hooks):
        found += [(table, key, h) for key, h in table.items() if isinstance(h, ApplySite)]
    return found


def inserted_modules(model: nn.Module) -> set[int]:
    """ids of every module that ``regularize`` inserted into ``model``."""
    return {id(getattr(h.host, h.name)) for m in model.modules() for _, _, h in site_hooks(m)
            if hasattr(h.host, h.name)}


def probe(model: nn.Module, example_input: object) -> None:
    """One eval-mode, no-grad forward of ``example_input`` (a tensor or a tuple of inputs);
    every module's train/eval flag is restored after, even if the forward fails."""
    modes = {m: m.training for m in model.modules()}
    try:
        model.eval()
        with torch.no_grad():
            model(*example_input) if isinstance(example_input, tuple) else model(example_input)
    finally:
        for m, mode in modes.items():
            m.training = mode
