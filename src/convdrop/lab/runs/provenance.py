"""What a report records about how it was made: versions, device, wall time, method settings.

Kept apart from :mod:`convdrop.lab.report.writer`, whose functions are pure: these ask the
installed packages and the machine.
"""

from __future__ import annotations

import dataclasses
import os
import platform
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import torch

from convdrop._devices import resolve_device
from convdrop.lab.data import DEFAULT_FOLDER_SIZE, DEFAULT_IMAGE_SIZE
from convdrop.lab.data import streams as _streams
from convdrop.lab.spec.experiment import ExperimentSpec
from convdrop.lab.spec.methods import resolve
from convdrop.lab.train.run_data import loader_workers

__all__ = ["duration", "method_settings", "run_info"]


def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "not installed"


def duration(seconds: float) -> str:
    """``"1 min 52 s"``, ``"48.3 s"`` or ``"2 h 05 min"``."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def _device_text(name: str, workers: int) -> str:
    device = resolve_device(name)
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)}), requested {name!r}"
    threads = ""
    if device.type == "cpu":  # the runner gives each worker process its share of the cores
        each = torch.get_num_threads() if workers == 1 else max(1, (os.cpu_count() or 1)
                                                                // workers)
        threads = f", {each} thread(s) per run"
    return f"{device} ({platform.processor() or platform.machine()}{threads}), requested {name!r}"


def _data_text(spec: ExperimentSpec) -> str:
    """Where the images came from: held in memory, or streamed with how many workers."""
    streamed = _streams(spec.data, spec.data_mode)
    size = spec.image_size or (DEFAULT_FOLDER_SIZE if spec.data.startswith("folder")
                               else DEFAULT_IMAGE_SIZE)
    workers = loader_workers(spec, True, resolve_device(spec.device))
    where = (f"streamed from disk, {workers} loader worker(s) per run"
             if streamed else "held in memory")
    return f"{spec.data}, {where}, {size}x{size}, augment {spec.augment}, normalization " \
           f"{spec.normalization}"


def run_info(spec: ExperimentSpec, wall_seconds: float | None) -> dict[str, str]:
    """The lines at the top of report.md: versions, device, workers, date and wall time."""
    info = {
        "versions": f"convdrop {_version('convdrop')}, torch {torch.__version__}, "
                    f"Python {platform.python_version()}",
        "device": _device_text(spec.device, spec.workers),
        "runs": f"{len(spec.methods)} methods x {spec.seeds} seeds, {spec.workers} worker "
                f"process(es)",
        "data": _data_text(spec),
        "finished": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }
    if wall_seconds is not None:
        info["wall time"] = duration(wall_seconds) + " (runs already finished are not redone)"
    return info


def method_settings(spec: ExperimentSpec) -> dict[str, dict[str, Any]]:
    """Each method's resolved settings (its base method with the spec's overrides)."""
    settings = {}
    for name in spec.methods:
        method = dataclasses.asdict(resolve(spec, name))
        method["model"] = method["model"] or spec.model
        if method["regularizer"] is None or not method["p"]:  # nothing dropped: no where/when
            method.update(p=None, block_size=None, schedule=None, placement=None)
        elif method["regularizer"] == "dropblock" and method["block_size"] is None:
            method["block_size"] = "model's default"
        settings[name] = method
    return settings
