"""Experiment specs: a grid of methods x seeds, from a preset, a TOML file and flags.

Configuration is layered: CPU-sized defaults for the bundled data (see
:data:`convdrop.lab.spec.presets.SMALL_DATA_DEFAULTS`), a preset, then the ``[experiment]`` and
``[methods.NAME]`` tables of a TOML file, then command-line flags (built from these
fields' types and descriptions by :mod:`convdrop.cli.flags`). Unknown keys, unknown
methods and out-of-range values raise :class:`convdrop.errors.SpecError` naming the
key and value. The resolved spec is saved beside the results as ``config.json``.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from convdrop import models
from convdrop.errors import SpecError, did_you_mean
from convdrop.lab.spec import external, presets
from convdrop.lab.spec.base_methods import BASE_METHODS
from convdrop.lab.spec.reader import read_toml
from convdrop.lab.spec.weights import weights_sha256

# Names that become folder names: letters, digits, "-", "_", "."; no leading dot, no separator.
NAME_PATTERN = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,99}")


def check_name(value: str, key: str) -> str:
    """``value`` if it is a safe folder name, else :class:`SpecError` naming ``key``."""
    if not isinstance(value, str) or not NAME_PATTERN.fullmatch(value):
        raise SpecError(f"{key}: {_NAME_RULE} (got {value!r})")
    return value


_NAME_RULE = ("a name must be 1-100 letters, digits, '-', '_' or '.', not starting with '.' "
              "(it names a folder under --out)")


def _safe_name(value: str) -> str:
    if not NAME_PATTERN.fullmatch(value):
        raise ValueError(_NAME_RULE)
    return value


SafeName = Annotated[str, AfterValidator(_safe_name)]


# Strict: a TOML file gives typed values, so "3", ["3"] or "yes" where a number or a switch
# belongs is a mistake to name, not a string to convert (an int still fits a float).
# Flags are strings: they are converted by their own types first (convdrop.cli.flags).
STRICT = ConfigDict(extra="forbid", frozen=True, strict=True)


class MethodOptions(BaseModel):
    """Per-method overrides (``[methods.NAME]``); None keeps the method's default."""

    model_config = STRICT

    base: str | None = None  # a built-in method this variant starts from
    p: float | None = Field(None, ge=0.0, le=1.0)  # drop probability (target rate)
    block_size: int | None = Field(None, ge=1)  # DropBlock block side
    schedule: Literal["constant", "linear", "cosine", "step"] | None = None  # drop-rate ramp
    label_smoothing: float | None = Field(None, ge=0.0, lt=1.0)
    cutout: int | None = Field(None, ge=0)  # Cutout patch side in pixels, 0 = off
    placement: str | None = None  # where regularizers go (see convdrop.lab.spec.methods.PLACEMENTS)
    model: str | None = None  # a different model for this method only


class ExperimentSpec(BaseModel):
    """Everything that defines a comparison; see ``convdrop presets`` for ready ones."""

    model_config = STRICT

    name: SafeName = Field("regularizers", description="the preset it started from; names the "
                      "default output folder")
    methods: list[SafeName] = Field(min_length=1, description="methods to run, in report order")
    seeds: int = Field(3, ge=1, le=100, description="runs per method, seeds 0..seeds-1")
    epochs: int = Field(15, ge=1, description="training epochs")
    data: str = Field("digits", description="digits | synthetic | fashion-mnist[:PATH] | "
                      "cifar10:PATH | cifar100:PATH | folder:PATH")
    model: str = Field("simple_cnn", description="model: " + " | ".join(models.names())
                       + ", or torchvision:NAME | timm:NAME (any registry name, random "
                       "weights)")
    weights: str | None = Field(None, description="local state_dict file to load into the "
                                "model (never downloaded); keys that do not fit the data, "
                                "such as the classifier, stay fresh")
    model_options: dict[str, int | float | bool | str] = Field(
        default_factory=dict, description="model option (repeatable)",
        examples=[{"width": 16}], json_schema_extra={"flag": "model-option"})
    train_size: int | None = Field(None, ge=1, description="stratified subset of the "
                                   "training split; none = all of it")
    batch_size: int = Field(64, ge=1, description="batch size (the global batch under "
                            "torchrun, split evenly over the processes)")
    optimizer: Literal["sgd", "adamw"] = Field("adamw", description="optimizer")
    lr: float = Field(2e-3, gt=0, description="learning rate")
    weight_decay: float = Field(5e-4, ge=0, description="weight decay")
    lr_schedule: Literal["cosine", "step", "none"] = Field(
        "cosine", description="learning-rate schedule over training")
    augment: Literal["none", "crop", "crop+flip", "random_resized_crop+flip"] = Field(
        "crop", description="training augmentation: crop (+flip) pads by a side/8 and crops "
        "back (CIFAR-style); random_resized_crop+flip is ImageNet-style")
    image_size: int | None = Field(None, ge=8, description="image side in pixels; none = 32, "
                                   "224 for folder data, 28 for fashion-mnist")
    data_mode: Literal["auto", "memory", "stream"] = Field(
        "auto", description="auto streams folders from disk and holds the rest in memory")
    normalization: Literal["train", "imagenet", "none"] = Field(
        "train", description="normalize with the train split's channel statistics, "
        "ImageNet's, or not at all")
    loader_workers: int | None = Field(
        None, ge=0, description="DataLoader worker processes per run; none = 0 in memory, "
        "and for streamed data the cores of the run's share (CPUs / workers) left after its "
        "own compute threads (one on a GPU), at most 8",
        json_schema_extra={"flag": "workers-per-run"})
    device: str = Field("auto", description="auto | cpu | cuda | cuda:N | mps")
    channels_last: bool | None = Field(None, description="channels-last memory format; "
                                       "none = on for CUDA")
    amp: bool | None = Field(None, description="bfloat16 autocast (CUDA only); none = on for "
                             "CUDA")
    workers: int = Field(1, ge=1, description="parallel runs (processes)")
    require_overfit: bool = Field(False, description="after writing the report, exit with "
                                  "status 3 unless the control overfits (the report's Regime)")
    method_options: dict[SafeName, MethodOptions] = Field(default_factory=dict)

    @field_validator("data", "model", "device")
    @classmethod
    def _utf8(cls, value: str) -> str:
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("not valid UTF-8 (a path with undecodable bytes?); rename it "
                             "to a UTF-8 name") from None
        return value

    @model_validator(mode="after")
    def _methods_known(self) -> ExperimentSpec:
        for name in self.methods:
            options = self.method_options.get(name)
            base = options.base if options and options.base else name
            if base not in BASE_METHODS:
                what = f"method {name!r}" if base == name else f"base {base!r} of {name!r}"
                raise ValueError(
                    f"methods: unknown {what}{did_you_mean(base, BASE_METHODS)} (expected one "
                    f"of {', '.join(sorted(BASE_METHODS))}, or a [methods.{name}] table "
                    "with base = one of them)"
                )
        if len(set(self.methods)) != len(self.methods):
            raise ValueError(f"methods: a name is listed twice in {self.methods}")
        if self.require_overfit and "control" not in self.methods:
            raise ValueError("require_overfit: the regime is read off the method named "
                             f"'control', which is not among methods {self.methods}; add it "
                             "(a sweep: control = true) or leave require_overfit off")
        return self

    @model_validator(mode="after")
    def _offline(self) -> ExperimentSpec:
        """Nothing is downloaded: refuse a model name or option that would (hf-hub:, ...)."""
        models_used = [(self.model, self.model_options)] + [
            (o.model, {}) for o in self.method_options.values() if o.model]
        for name, options in models_used:
            problem = external.download_problem(name, options)
            if problem:
                raise ValueError(problem)
        return self

    def options_for(self, method: str) -> MethodOptions:
        """The overrides of one method (empty if none)."""
        return self.method_options.get(method, MethodOptions())

    def run_settings(self, method: str) -> dict[str, Any]:
        """Every setting one run of ``method`` depends on (not the seed count or device).

        ``workers`` is in it: each worker process computes with fewer CPU threads, which
        changes the float sums, so a run of another worker count is not the same run. So is
        the SHA-256 of the ``weights`` file: other weights under the same path are other runs.
        ``require_overfit`` is not: it only decides the exit status.
        """
        shared = self.model_dump(exclude={"name", "methods", "seeds", "device",
                                          "method_options", "require_overfit"})
        if self.weights is not None:
            shared["weights_sha256"] = weights_sha256(self.weights)
        return {"shared": shared, "method": method,
                "options": self.options_for(method).model_dump()}

    def run_key(self, method: str) -> str:
        """Hash of :meth:`run_settings`: a run folder holds the results of one key."""
        payload = json.dumps(self.run_settings(method), sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


def format_validation_error(err: ValidationError, where: str) -> str:
    """One readable line per problem, naming the key and the value: ``experiment.epochs:
    input should be greater than or equal to 1 (got 0)``; an unknown key or name gets the
    closest valid one ("did you mean ...?")."""
    return "; ".join(_problem_text(problem, where) for problem in err.errors())


def _problem_text(problem: Any, where: str) -> str:
    msg = problem["msg"].removeprefix("Value error, ")
    loc = [str(part) for part in problem["loc"]]
    if not loc:  # a check across fields: its message starts with the key it is about
        return f"{where}.{msg}"
    in_method = loc[0] == "method_options"  # TOML [methods.NAME] tables
    key = ".".join(["methods", *loc[1:]] if in_method else [where, *loc])
    got = problem.get("input")
    if problem["type"] == "extra_forbidden":
        known = MethodOptions.model_fields if in_method else ExperimentSpec.model_fields
        hint = did_you_mean(loc[-1], known) or f" (expected one of {', '.join(known)})"
        return f"{key}: unknown key{hint}"
    text = f"{key}: {msg[:1].lower()}{msg[1:]} (got {got!r})" if "input" in problem else \
        f"{key}: {msg}"
    if problem["type"] == "literal_error":
        text += did_you_mean(got, re.findall(r"'([^']*)'", problem["ctx"]["expected"]))
    return text


def _small_defaults(chosen: dict[str, Any], on_digits: dict[str, Any]) -> dict[str, Any]:
    """CPU-sized defaults for the bundled data sets and Fashion-MNIST
    (:data:`convdrop.lab.spec.presets.DATA_DEFAULTS`), with the preset's own recipe for
    digits on top, beneath everything chosen."""
    kind = str(chosen.get("data", "digits")).partition(":")[0].strip().lower()
    if kind not in presets.DATA_DEFAULTS:
        return {}
    small = {**presets.DATA_DEFAULTS[kind], **(on_digits if kind == "digits" else {})}
    model_options = presets.SMALL_MODEL_OPTIONS.get(chosen.get("model", "simple_cnn"))
    if model_options and "model_options" not in small:
        small["model_options"] = model_options
    return small


def build_spec(
    *, preset: str | None = None, spec_file: Path | None = None,
    overrides: dict[str, Any] | None = None, on_digits: dict[str, Any] | None = None,
) -> ExperimentSpec:
    """Layer preset < spec file < overrides (None values are ignored) into a valid spec.

    On the bundled data :data:`~convdrop.lab.spec.presets.SMALL_DATA_DEFAULTS` lie beneath
    them, and on digits the preset's ``on_digits`` recipe above those; a sweep passes its
    own preset's recipe (``{}`` for none) as ``on_digits``, in place of the preset's.
    """
    from_file = read_toml(spec_file) if spec_file is not None else {}
    flags = {k: v for k, v in (overrides or {}).items() if v is not None}
    chosen = flags.pop("preset", None) or preset or from_file.pop("preset", None)
    from_file.pop("preset", None)
    preset_part = presets.preset_fields(chosen or "regularizers")
    recipe = preset_part.pop("on_digits", {})
    recipe = recipe if on_digits is None else on_digits
    file_methods = from_file.pop("method_options", {})
    merged_options = {**preset_part.pop("method_options", {})}
    for name, table in file_methods.items():
        if not isinstance(table, dict):
            raise SpecError(f"spec key methods.{name}: expected a table, got {table!r}")
        merged_options[name] = {**merged_options.get(name, {}), **table}
    chosen_fields = {**preset_part, **from_file, **flags}
    fields = {**_small_defaults(chosen_fields, recipe), **chosen_fields}
    fields["method_options"] = merged_options
    try:
        return ExperimentSpec(**fields)
    except ValidationError as err:
        raise SpecError(format_validation_error(err, "experiment")) from None
