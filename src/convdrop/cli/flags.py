"""Command-line flags built from pydantic fields, so a setting is defined once.

:func:`add_field_flags` adds ``--field-name`` for fields of a pydantic model: the
type and constraints come from the annotation and are checked while argparse
parses, so a bad value is one line naming the flag, the value and what was
expected; ``Literal`` types give choices, ``bool`` gives ``--x/--no-x``, a list is
comma-separated, a dict is a repeatable ``KEY=VALUE``; help is the field's
description with its default. Every flag defaults to None (not given), so the
layers beneath the command line keep their values; :func:`given` collects the
flags that were set.

:func:`add_spec_flags` and :func:`spec_from_args` are the experiment settings that
``convdrop compare`` and ``convdrop train`` share: ``--spec``, ``--preset`` and
:data:`SHARED_FIELDS` of :class:`convdrop.lab.spec.experiment.ExperimentSpec`.
"""

from __future__ import annotations

import argparse
import types
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, Field, TypeAdapter, ValidationError
from pydantic.fields import FieldInfo

from convdrop.lab.runs.executors import EXECUTOR_FIELDS, ExecutorSettings
from convdrop.lab.spec import presets
from convdrop.lab.spec.experiment import ExperimentSpec, build_spec

# The settings of one run, in help order; compare adds the grid (methods, seeds, workers).
SHARED_FIELDS: tuple[str, ...] = (
    "data", "model", "weights", "model_options", "epochs", "train_size", "batch_size",
    "optimizer", "lr", "weight_decay", "lr_schedule", "augment", "image_size", "data_mode",
    "normalization", "loader_workers", "device", "channels_last", "amp",
)
GRID_FIELDS: tuple[str, ...] = ("methods", "seeds", "workers")
# What a comparison or sweep checks once its report is written (not `train`).
REPORT_FIELDS: tuple[str, ...] = ("require_overfit",)
LAYERS_EPILOG = (
    "Each setting comes from, lowest first: the defaults shown, CPU-sized defaults on the "
    "bundled data (digits, synthetic) and fashion-mnist, the preset, the --spec file, then "
    "these flags."
)


def flag_type(annotation: Any) -> Callable[[str], Any]:
    """An argparse ``type`` that validates a string against ``annotation`` with pydantic."""
    adapter = TypeAdapter(annotation)

    def convert(raw: str) -> Any:
        try:
            return adapter.validate_python(raw)
        except ValidationError as err:
            raise argparse.ArgumentTypeError(_invalid(raw, err)) from None

    return convert


def _invalid(raw: str, err: ValidationError) -> str:
    msg = err.errors()[0]["msg"]
    return f"invalid value {raw!r}: {msg[:1].lower()}{msg[1:]}"


def _annotated(annotation: Any, metadata: Sequence[Any]) -> Any:
    """``Annotated[annotation, *metadata]`` (the constraints, e.g. ``ge=1``), on Python 3.10 too."""
    return Annotated[(annotation, *metadata)] if metadata else annotation


def _list_type(annotation: Any) -> Callable[[str], list[Any]]:
    convert = flag_type(annotation)
    return lambda raw: convert([part.strip() for part in raw.split(",")])


def _pair_type(value_annotation: Any, example: str) -> Callable[[str], tuple[str, Any]]:
    """``KEY=VALUE``; the value takes the first type of the union it fits (16 -> int)."""
    value = flag_type(Annotated[value_annotation, Field(union_mode="left_to_right")])

    def convert(raw: str) -> tuple[str, Any]:
        key, sep, text = (part.strip() for part in raw.partition("="))
        if not (key and sep and text):
            raise argparse.ArgumentTypeError(
                f"invalid value {raw!r}: expected KEY=VALUE, e.g. {example}")
        return key, value(text)

    return convert


def _without_none(annotation: Any) -> Any:
    if get_origin(annotation) in (Union, types.UnionType):
        kept = [arg for arg in get_args(annotation) if arg is not type(None)]
        return kept[0] if len(kept) == 1 else Union[tuple(kept)]  # noqa: UP007
    return annotation


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items()) or "none"
    return "none" if value is None else str(value)


def _flag_options(name: str, info: FieldInfo) -> dict[str, Any]:
    """``add_argument`` keywords of one field (all but help)."""
    annotation = _without_none(info.annotation)
    origin = get_origin(annotation)
    if annotation is bool:
        return {"action": argparse.BooleanOptionalAction}
    if origin is Literal:
        return {"choices": get_args(annotation)}
    if origin is dict:
        example = _shown(info.examples[0]) if info.examples else "KEY=1"
        return {"action": "append", "metavar": "KEY=VALUE",
                "type": _pair_type(get_args(annotation)[1], example)}
    if origin is list:
        return {"metavar": "A,B,...", "type": _list_type(_annotated(annotation, info.metadata))}
    metavar = {int: "N", float: "X"}.get(annotation, name.upper())
    return {"metavar": metavar, "type": flag_type(_annotated(annotation, info.metadata))}


def add_field_flags(parser: argparse.ArgumentParser, model: type[BaseModel],
                    names: Sequence[str], *, notes: Mapping[str, str] | None = None) -> None:
    """Add ``--name`` (or the field's ``json_schema_extra["flag"]``) for each field.

    ``notes[name]`` is appended to the shown default (e.g. another default on some data).
    """
    for name in names:
        info = model.model_fields[name]
        extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
        flag = "--" + str(extra.get("flag", name.replace("_", "-")))
        note = (notes or {}).get(name)
        if info.is_required():  # a layer beneath must set it
            shown = note or "required"
        else:
            shown = _shown(info.get_default(call_default_factory=True))
            shown += f"; {note}" if note else ""
        text = f"{info.description or name} (default: {shown})".replace("%", "%%")
        parser.add_argument(flag, dest=name, default=None, help=text,
                            **_flag_options(name, info))


def given(args: argparse.Namespace, model: type[BaseModel], names: Sequence[str]
          ) -> dict[str, Any]:
    """The fields whose flags were given; repeated ``KEY=VALUE`` pairs become a dict."""
    values = {name: getattr(args, name) for name in names if getattr(args, name) is not None}
    return {name: dict(value) if get_origin(_without_none(model.model_fields[name].annotation))
            is dict else value for name, value in values.items()}


def small_data_notes(recipes: Mapping[str, Mapping[str, Any]] | None = None
                     ) -> dict[str, str]:
    """Where the bundled data and Fashion-MNIST start from other defaults than the spec's:
    the help of every command whose runs take them (compare, train, sweep) shows both.
    ``recipes``: each preset's own recipe on digits (default: ``compare``'s presets)."""
    where = " and ".join(presets.SMALL_DATA)
    notes = {name: f"{_shown(value)} on {where}"
             for name, value in presets.SMALL_DATA_DEFAULTS.items()}
    for name, value in presets.FASHION_DEFAULTS.items():
        shown = f"{_shown(value)} on fashion-mnist"
        notes[name] = f"{notes[name]}, {shown}" if name in notes else shown
    if recipes is None:
        recipes = {name: fields.get("on_digits", {}) for name, (_, fields) in
                   presets.PRESETS.items()}
    for preset, recipe in recipes.items():  # a preset's own recipe on digits
        for name, value in recipe.items():
            notes[name] = f"{notes.get(name, 'none')}, {_shown(value)} with {preset} on digits"
    notes["methods"] = "the preset's"
    every = ", ".join((*presets.SMALL_DATA, "fashion-mnist"))
    notes["model_options"] = "; ".join(f"{_shown(opts)} for {model} on {every}"
                                       for model, opts in presets.SMALL_MODEL_OPTIONS.items())
    return notes


def add_spec_flags(parser: argparse.ArgumentParser, names: Sequence[str] = SHARED_FIELDS
                   ) -> None:
    """``--spec``, ``--preset`` and a flag per spec field in ``names``."""
    parser.add_argument("--spec", type=Path, metavar="FILE",
                        help="TOML spec file ([experiment], [methods.NAME])")
    parser.add_argument("--preset", choices=sorted(presets.PRESETS), metavar="NAME",
                        help="built-in experiment to start from: "
                        f"{', '.join(sorted(presets.PRESETS))} (see `convdrop presets`; "
                        "default: the --spec file's preset, else regularizers)")
    add_field_flags(parser, ExperimentSpec, names, notes=small_data_notes())


def spec_from_args(args: argparse.Namespace, names: Sequence[str] = SHARED_FIELDS,
                   **fixed: Any) -> ExperimentSpec:
    """The spec of preset < ``--spec`` file < flags < ``fixed``.

    ``--model-option`` pairs are added to the options the layers beneath chose.
    """
    overrides = {"preset": args.preset, **given(args, ExperimentSpec, names), **fixed}
    options = overrides.pop("model_options", None)
    spec = build_spec(spec_file=args.spec, overrides=overrides)
    if not options:
        return spec
    merged = {**spec.model_options, **options}
    return build_spec(spec_file=args.spec, overrides={**overrides, "model_options": merged})


def add_executor_flags(parser: argparse.ArgumentParser) -> None:
    """``--executor``, ``--ray-address``, ``--cpus-per-run``, ``--gpus-per-run``."""
    add_field_flags(parser, ExecutorSettings, EXECUTOR_FIELDS)


def executor_from_args(args: argparse.Namespace) -> tuple[ExecutorSettings, dict[str, Any]]:
    """The executor flags, and the spec fields they fix: ``--executor local`` is one run
    at a time, so ``workers`` is 1 unless ``--workers`` says otherwise (then an error)."""
    settings = ExecutorSettings(**given(args, ExecutorSettings, EXECUTOR_FIELDS))
    single = settings.executor == "local" and getattr(args, "workers", None) is None
    return settings, {"workers": 1} if single else {}
