"""What a report records about how it was made: versions, device, executor, the node of each
run, wall time, method settings.

Kept apart from :mod:`convdrop.lab.report.writer`, whose functions are pure: these ask the
installed packages and the machine.
"""

from __future__ import annotations

import dataclasses
import os
import platform
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from typing import Any, Protocol

import torch

from convdrop._devices import resolve_device
from convdrop.lab.data import default_image_size
from convdrop.lab.data import streams as _streams
from convdrop.lab.spec.experiment import ExperimentSpec
from convdrop.lab.spec.methods import resolve
from convdrop.lab.spec.weights import fresh_note, weights_sha256
from convdrop.lab.train.run_data import loader_workers

__all__ = ["duration", "method_settings", "nodes", "run_info", "weights_notes"]


class Described(Protocol):
    """What the report needs of an executor (:mod:`convdrop.lab.runs.executors`)."""

    threads: int | None

    def describe(self) -> str: ...


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


def _device_text(name: str, workers: int, threads: int | None = None) -> str:
    device = resolve_device(name)
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)}), requested {name!r}"
    threads_text = ""
    if device.type == "cpu":  # the runner gives each worker process its share of the cores
        each = threads or (torch.get_num_threads() if workers == 1
                           else max(1, (os.cpu_count() or 1) // workers))
        threads_text = f", {each} thread(s) per run"
    return f"{device} ({platform.processor() or platform.machine()}{threads_text}), requested " \
           f"{name!r}"


def _data_text(spec: ExperimentSpec) -> str:
    """Where the images came from: held in memory, or streamed with how many workers."""
    streamed = _streams(spec.data, spec.data_mode)
    size = spec.image_size or default_image_size(spec.data)
    workers = loader_workers(spec, True, resolve_device(spec.device))
    where = (f"streamed from disk, {workers} loader worker(s) per run"
             if streamed else "held in memory")
    return f"{spec.data}, {where}, {size}x{size}, augment {spec.augment}, normalization " \
           f"{spec.normalization}"


def nodes(results: Sequence[dict[str, Any]]) -> str:
    """Which machine trained each run: ``"hostA: control/seed0, ...; hostB: ..."``.

    From each result's ``host`` (written when the run finished, so a run trained by an
    earlier command keeps its machine); results without one are left out.
    """
    by_host: dict[str, list[str]] = {}
    for result in results:
        if result.get("host"):
            by_host.setdefault(str(result["host"]), []).append(
                f"{result['method']}/seed{result['seed']}")
    return "; ".join(f"{host}: {', '.join(runs)}" for host, runs in by_host.items())


def run_info(spec: ExperimentSpec, wall_seconds: float | None, *,
             executor: Described | None = None, results: Sequence[dict[str, Any]] = ()
             ) -> dict[str, str]:
    """The lines at the top of report.md: versions, device, executor, the node of each run,
    date and wall time."""
    threads = executor.threads if executor is not None else None
    info = {
        "versions": f"convdrop {_version('convdrop')}, torch {torch.__version__}, "
                    f"Python {platform.python_version()}",
        "device": _device_text(spec.device, spec.workers, threads),
        "runs": f"{len(spec.methods)} methods x {spec.seeds} seeds, {spec.workers} worker "
                f"process(es)",
        "data": _data_text(spec),
        "finished": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }
    if executor is not None:
        info["executor"] = executor.describe()
        info["runs"] = f"{len(spec.methods)} methods x {spec.seeds} seeds"
    if nodes(results):
        info["nodes"] = nodes(results)
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


def weights_notes(spec: ExperimentSpec, results: Sequence[Mapping[str, Any]]) -> list[str]:
    """The report's line on ``--weights``: the file, its SHA-256, and the tensors each run
    recorded as left fresh (none when every tensor loaded)."""
    if spec.weights is None:
        return []
    fresh: dict[str, list[str]] = {}
    for result in results:
        fresh.setdefault(result["method"], list(result.get("weights_fresh", [])))
    return [f"{fresh_note(spec.weights, fresh)} (sha256 {weights_sha256(spec.weights)})"]
