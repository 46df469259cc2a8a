"""Everything a comparison or a run would trip over, checked before anything is printed or written.

:func:`preflight` checks, fastest first: the device (``--device cuda`` without CUDA is
found in a second, not after the data), the data and ``train_size`` (by reading the
data set, which the first run then reuses), the model and every method's placement
(built on the ``meta`` device, so a ResNet-50 costs no memory and no time, and a model
too large for the device is refused before it is allocated, see
:mod:`convdrop.lab.runs.model_size`), and the runs already in ``--out``: one with other
settings is an error that says which settings differ, and a finished one must hold this
run's result (an edited or copied ``result.json`` is refused) trained on the images the
data holds now (an image folder's listing), found before the first epoch rather than in
the middle of a grid.
Each problem is a :class:`convdrop.errors.UserError` of one line.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from pydantic import ValidationError

from convdrop import models
from convdrop._devices import resolve_device
from convdrop.errors import RunFolderError, SpecError, did_you_mean
from convdrop.lab.data import Datasets
from convdrop.lab.runs.blocks import oversized_blocks, oversized_warning
from convdrop.lab.runs.model_size import check_fits
from convdrop.lab.spec.experiment import ExperimentSpec
from convdrop.lab.spec.methods import build_recipe, resolve
from convdrop.lab.spec.weights import fresh_note
from convdrop.lab.train.checkpoint import read_header
from convdrop.lab.train.run_data import load_run_data
from convdrop.lab.train.store import RunPaths, check_listing, finished_result

__all__ = ["check_models", "check_runs", "preflight", "settings_diff"]


def preflight(spec: ExperimentSpec, out: Path, seeds: Iterable[int]) -> list[str]:
    """Raise the first problem of running ``spec``'s methods with ``seeds`` into ``out``;
    returns what the user should read before it runs (which ``--weights`` stay fresh)."""
    device = resolve_device(spec.device)
    data = _data(spec)
    fresh, warned = check_models(spec, data, device)
    check_runs(spec, out, seeds, listing=data.listing)
    for note in warned:  # after every check passed: bad input stays one line
        warnings.warn(note, UserWarning, stacklevel=2)
    return [] if spec.weights is None else [fresh_note(spec.weights, fresh)]


def _data(spec: ExperimentSpec) -> Datasets:
    """The data of seed 0; kept (cached) for the first run when runs train in this process.
    A streamed folder is listed here (held in memory for the runs of this process, see
    :mod:`convdrop.lab.data.index`) but nothing is cached on disk before every check passed."""
    return load_run_data(spec, 0, keep=spec.workers == 1)


def _model_name(spec: ExperimentSpec, method: str) -> str:
    return resolve(spec, method).model or spec.model


def _alike(spec: ExperimentSpec, methods: Iterable[str]) -> dict[str, list[str]]:
    """Groups of methods that build the same model but for their nonzero drop rate (a
    sweep's points along p), each under its first method: a rate in (0, 1] sets the
    regularizers' rates, never what is built, so a 1,000-point sweep builds a model per
    line, not per point."""
    groups: dict[tuple, list[str]] = {}
    for method in methods:
        resolved = resolve(spec, method)
        shape = (replace(resolved, p=float(resolved.p > 0)), spec.options_for(method).base)
        groups.setdefault(shape, []).append(method)
    return {group[0]: group for group in groups.values()}


def check_models(spec: ExperimentSpec, data: Datasets, device: torch.device | None = None
                 ) -> tuple[dict[str, list[str]], list[str]]:
    """Build every method's model and placement on the meta device (no memory, no time);
    refuse a model too large for ``device`` (the spec's by default) before it is allocated.

    Returns each method's ``--weights`` keys that keep their fresh initialization, and the
    warnings to give once all is checked: at most one line, on DropBlock blocks larger
    than every map they meet (:mod:`convdrop.lab.runs.blocks`)."""
    device = device or resolve_device(spec.device)
    oversized: dict[int, tuple[int, list[str]]] = {}
    fresh = {}
    for method, group in _alike(spec, spec.methods).items():
        name = _model_name(spec, method)
        key = "model" if name == spec.model else f"methods.{method}.model"
        if ":" not in name and name not in models.names():
            raise SpecError(f"{key}: unknown model {name!r}{did_you_mean(name, models.names())}"
                            f" (expected one of {', '.join(models.names())})")
        if name == spec.model:
            _check_model_options(name, spec.model_options)
        with torch.device("meta"):
            recipe = build_recipe(spec, method, data.num_classes, data.in_channels)
            model = recipe.model
            options = spec.model_options if name == spec.model else {}
            check_fits(model, name, options, spec.optimizer, device,
                       "model_options" if options else key)
            _check_image_size(model.eval(), name, data)
            size = data.image_size
            example = torch.empty(1, data.in_channels, size, size)
            for block, side in oversized_blocks(model, example).items():
                largest, methods = oversized.get(block, (0, []))
                oversized[block] = (max(largest, side), [*methods, method])
        fresh.update(dict.fromkeys(group, list(recipe.fresh_keys)))  # same model, same keys
    note = oversized_warning(oversized)
    return fresh, [note] if note else []


def _check_image_size(model: torch.nn.Module, name: str, data: Datasets) -> None:
    """One forward of a meta image of the data's size: a model that cannot take it (too
    small for its strides and pools) fails here, not in the first training step."""
    size = data.image_size
    try:
        model(torch.empty(2, data.in_channels, size, size, device="meta"))
    except (RuntimeError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise SpecError(f"image_size: model {name!r} cannot take {size}x{size} images "
                        f"({first}); choose a larger image_size") from None


def _check_model_options(name: str, chosen: Mapping[str, Any]) -> None:
    if ":" in name:  # a model from another library: its builder checks its options
        return
    valid = models.options(name)
    for option in chosen:
        if option not in valid:
            raise SpecError(f"model_options: unknown option {option!r} for model {name!r}"
                            f"{did_you_mean(option, valid)} (expected some of "
                            f"{', '.join(sorted(valid))})")


def _flat(settings: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in settings.items():
        if isinstance(value, Mapping) and value:
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def settings_diff(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """``["epochs 5 there, 3 now", ...]`` between two :meth:`ExperimentSpec.run_settings`."""
    was, now = _flat(old), _flat(new)
    names = {"shared.": "", "options.": "methods option "}
    changes = []
    for key in sorted(set(was) | set(now)):
        if was.get(key) != now.get(key):
            shown = next((key.replace(p, n, 1) for p, n in names.items() if key.startswith(p)),
                         key)
            changes.append(f"{shown} {was.get(key)!r} there, {now.get(key)!r} now")
    return changes


def _stored_spec(out: Path, paths: RunPaths) -> ExperimentSpec | None:
    """The spec that wrote a run: its own config.json (``train``), else OUT/config.json."""
    for path, key in ((paths.config, "spec"), (out / "config.json", None)):
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            return ExperimentSpec.model_validate(raw[key] if key else raw)
        except (OSError, ValueError, KeyError, TypeError, ValidationError):
            continue
    return None


def _changes(old: ExperimentSpec | None, new: ExperimentSpec, method: str, stored: Any
             ) -> list[str]:
    """The settings in which the run that wrote ``stored`` differs from ``new``'s: found when
    its spec still gives that key, or when only the weights file under its path changed."""
    if old is None:
        return []
    changes = settings_diff(old.run_settings(method), new.run_settings(method))
    if old.run_key(method) == stored:
        return changes
    if old.weights is not None and old.weights == new.weights:
        return [*changes, f"the contents of weights {new.weights} changed since"]
    return []


def check_runs(spec: ExperimentSpec, out: Path, seeds: Iterable[int], *,
               listing: str | None = None) -> None:
    """A finished run in ``out`` with other settings is an error naming the settings; one
    with these settings must be this run's result (:func:`finished_result`'s checks).
    ``listing`` (an image folder's, now) must be the one every run there was trained on."""
    for method in spec.methods:
        for seed in seeds:
            paths = RunPaths.of(out, method, seed)
            try:
                stored = json.loads(paths.result.read_text(encoding="utf-8")).get("run_key")
            except (OSError, ValueError, AttributeError):
                header = read_header(paths)  # an unfinished run: on the same images?
                if header is not None and header.get("run_key") == spec.run_key(method):
                    check_listing(paths, paths.checkpoint, header.get("data_listing"),
                                  listing, spec.data, finished=False)
                continue  # the runner reads back and reports an unreadable run
            if stored == spec.run_key(method):  # the same settings: is it this run's result?
                done = finished_result(paths, stored, method=method, seed=seed,
                                       epochs=spec.epochs)
                check_listing(paths, paths.result, done.get("data_listing"), listing,
                              spec.data, finished=True)
                continue
            what = "; ".join(_changes(_stored_spec(out, paths), spec, method, stored)) or \
                f"run_key {stored} there, {spec.run_key(method)} now"
            raise RunFolderError(f"{paths.root} holds a run with other settings ({what}); "
                                 "choose another --out, or delete that folder to rerun it")
