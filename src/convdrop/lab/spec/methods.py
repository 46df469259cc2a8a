"""The methods a comparison can run, and how each becomes a model plus training options.

A method is a base (one of :data:`convdrop.lab.spec.base_methods.BASE_METHODS`) with
optional overrides (:class:`convdrop.lab.spec.experiment.MethodOptions`). Its regularizer
goes where its ``placement`` says (:data:`PLACEMENTS`), through a model's built-in sites
where the model has them and through :func:`convdrop.regularize` rules otherwise, so every
method works on every model of the zoo, and on ``torchvision:NAME`` / ``timm:NAME``
models (:mod:`convdrop.lab.spec.external`), where rules place every method: after each
conv (squeeze-excitation convs left out) or before the linear layers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from torch import nn

from convdrop.errors import SpecError, did_you_mean
from convdrop.lab.data.augment import Augment
from convdrop.lab.spec import external
from convdrop.lab.spec.base_methods import BASE_METHODS, Method
from convdrop.lab.spec.experiment import ExperimentSpec
from convdrop.lab.spec.weights import load_weights
from convdrop.models import create
from convdrop.placement import DropRateScheduler, Rule, regularize

_RESNETS = ("resnet18_cifar", "resnet18", "resnet50")
_DEEP_STAGES = "layer[34].*"  # the ResNets' groups 3 and 4, where the paper puts DropBlock

Placer = Callable[[str, Method], tuple[dict[str, Any], list[Rule]]]


def _rule(method: Method, **where: Any) -> Rule:
    block = method.block_size if method.regularizer == "dropblock" else None
    if method.regularizer == "dropblock" and block is None:
        block = 3
    return Rule(method.regularizer, method.p, block_size=block, **where)


def _between_convs(model: str, m: Method) -> tuple[dict[str, Any], list[Rule]]:
    """After every conv block (simple_cnn), the paper's sites (ResNets), or WRN's dropout."""
    block = {} if m.block_size is None else {"block_size": m.block_size}
    if external.is_external(model):
        return {}, [_rule(m)]
    if model == "simple_cnn":
        if m.regularizer == "dropblock":
            return {"dropblock": m.p, **block}, []
        variant = {"dropout": "dropout", "spatial_dropout": "spatial_dropout"}
        return {"variant": variant[m.regularizer], "dropout": m.p}, []
    if m.regularizer == "dropblock":
        return {"dropblock": m.p, **block}, []
    if model == "wide_resnet" and m.regularizer == "dropout":
        return {"dropout": m.p}, []
    return {}, [_rule(m, match=_DEEP_STAGES if model in _RESNETS else "*")]


def _head(model: str, m: Method) -> tuple[dict[str, Any], list[Rule]]:
    """Dropout only before the last linear layer."""
    if m.regularizer != "dropout":
        raise SpecError(f"placement 'head' takes regularizer 'dropout', got {m.regularizer!r}")
    if model == "simple_cnn":
        return {"variant": "head_dropout", "dropout": m.p}, []
    if model in _RESNETS:
        return {"dropout": m.p}, []
    return {}, [Rule("dropout", m.p, types=(nn.Linear,), position="before")]


def _every_conv(model: str, m: Method) -> tuple[dict[str, Any], list[Rule]]:
    """Right after every convolution (before its BN and ReLU: conv/drop/bn/relu)."""
    return {}, [_rule(m, types=(nn.Conv2d,))]


def _conv_dropout_bn_relu(model: str, m: Method) -> tuple[dict[str, Any], list[Rule]]:
    if model != "simple_cnn":
        raise SpecError(f"placement 'conv_dropout_bn_relu' needs model simple_cnn, got {model!r}")
    return {"batchnorm": True}, [_rule(m, types=(nn.Conv2d,))]


def _wide_resnet(model: str, m: Method) -> tuple[dict[str, Any], list[Rule]]:
    """bn/relu/conv/bn/relu/dropout/conv: WRN's own site (the model becomes wide_resnet)."""
    if m.regularizer != "dropout":
        raise SpecError(f"placement 'wide_resnet' takes 'dropout', got {m.regularizer!r}")
    return {"dropout": m.p, "depth": 10, "widen_factor": 2}, []


PLACEMENTS: dict[str, Placer] = {
    "between_convs": _between_convs,
    "head": _head,
    "every_conv": _every_conv,
    "conv_dropout_bn_relu": _conv_dropout_bn_relu,
    "wide_resnet": _wide_resnet,
}


def resolve(spec: ExperimentSpec, name: str) -> Method:
    """The method ``name`` with the spec's ``[methods.name]`` overrides applied."""
    options = spec.options_for(name)
    method = BASE_METHODS[options.base or name]
    changes = {k: v for k, v in options.model_dump(exclude={"base"}).items() if v is not None}
    if "placement" in changes and changes["placement"] not in PLACEMENTS:
        raise SpecError(f"methods.{name}.placement must be one of {sorted(PLACEMENTS)}, "
                         f"got {changes['placement']!r}"
                         f"{did_you_mean(changes['placement'], PLACEMENTS)}")
    method = replace(method, **changes)
    if method.placement == "wide_resnet":
        method = replace(method, model="wide_resnet")
    return method


@dataclass(frozen=True)
class Recipe:
    """A built model and the training options of its method."""

    model: nn.Module
    method: Method
    fresh_keys: tuple[str, ...] = ()  # --weights tensors left fresh: their shapes fit the data

    @property
    def label_smoothing(self) -> float:
        return self.method.label_smoothing

    def augment(self, kind: str, streamed: bool = False) -> Augment:
        """The spec's augmentation plus the method's Cutout; only the Cutout when the data
        are streamed (their workers apply ``kind`` per image)."""
        if streamed:
            return Augment(crop_pad=0, flip=False, cutout=self.method.cutout)
        return Augment(crop_pad=4 if kind.startswith("crop") else 0, flip=kind.endswith("+flip"),
                       cutout=self.method.cutout, resized_crop=kind.startswith("random_resized"))

    def drop_scheduler(self, model: nn.Module, total_steps: int) -> Any:
        """A DropRateScheduler for ramped methods; None for constant rates or no regularizer."""
        if self.method.regularizer is None or self.method.schedule == "constant":
            return None
        # the method's regularizers only: an architecture's own (torchvision's stochastic
        # depth, a classifier dropout) keep their rates
        return DropRateScheduler(model, self.method.schedule, total_steps, foreign=False)


def _create(model: str, method: str, num_classes: int, in_channels: int,
            options: dict[str, Any]) -> nn.Module:
    if external.is_external(model):
        return external.build(model, num_classes, in_channels, **options)
    try:
        return create(model, num_classes, in_channels, **options)
    except (TypeError, ValueError) as err:  # the spec's model, options or rates don't fit
        raise SpecError(f"method {method!r}: {err}") from err


def build_recipe(spec: ExperimentSpec, name: str, num_classes: int, in_channels: int) -> Recipe:
    """Build the model of method ``name`` for data with ``num_classes`` and ``in_channels``."""
    method = resolve(spec, name)
    model_name = method.model or spec.model
    kwargs: dict[str, Any] = {}
    rules: list[Rule] = []
    if method.regularizer is not None and method.p > 0:
        kwargs, rules = PLACEMENTS[method.placement](model_name, method)
    if method.batchnorm or kwargs.get("batchnorm"):
        if model_name != "simple_cnn":
            raise SpecError(f"method {name!r} switches batch norm on, which only simple_cnn "
                             f"can; model {model_name!r} always has it")
        kwargs["batchnorm"] = True
    if method.model is None or method.model == spec.model:
        kwargs = {**spec.model_options, **kwargs}
    model = _create(model_name, name, num_classes, in_channels, kwargs)
    fresh = () if spec.weights is None else tuple(load_weights(model, spec.weights))
    if rules:
        regularize(model, rules)
    return Recipe(model, method, fresh)
