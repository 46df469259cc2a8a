"""convdrop.lab.runs.provenance: what a report records about how it ran."""

from __future__ import annotations

import torch

from convdrop.lab.runs.executors import PoolExecutor
from convdrop.lab.runs.provenance import duration, method_settings, nodes, run_info
from convdrop.lab.spec.experiment import ExperimentSpec, build_spec


def test_duration() -> None:
    assert duration(48.34) == "48.3 s"
    assert duration(112) == "1 min 52 s"
    assert duration(7530) == "2 h 05 min"


def test_run_info_names_versions_device_and_wall_time() -> None:
    spec = build_spec(overrides={"data": "synthetic", "device": "cpu"})
    info = run_info(spec, 61.0)
    assert info["versions"].startswith("convdrop ") and torch.__version__ in info["versions"]
    assert info["device"].startswith("cpu (") and "requested 'cpu'" in info["device"]
    assert info["wall time"].startswith("1 min 01 s")
    assert "wall time" not in run_info(spec, None)


def test_method_settings_resolve_overrides_and_blank_what_does_not_apply() -> None:
    spec = ExperimentSpec(
        data="synthetic", methods=["control", "dropblock_scheduled", "wide"],
        method_options={"wide": {"base": "dropout", "placement": "head", "p": 0.5}})
    settings = method_settings(spec)
    assert settings["control"]["p"] is None and settings["control"]["placement"] is None
    assert settings["dropblock_scheduled"]["schedule"] == "linear"
    assert settings["dropblock_scheduled"]["block_size"] == "model's default"
    assert settings["wide"]["p"] == 0.5 and settings["wide"]["placement"] == "head"
    assert settings["wide"]["model"] == "simple_cnn"


def test_the_report_says_whether_the_data_streamed():
    memory = build_spec(overrides={"data": "digits", "methods": ["control"]})
    assert run_info(memory, None)["data"] == ("digits, held in memory, 32x32, augment crop, "
                                              "normalization train")
    folder = build_spec(overrides={"data": "folder:/x", "methods": ["control"],
                                   "loader_workers": 3, "augment": "random_resized_crop+flip"})
    assert run_info(folder, None)["data"] == (
        "folder:/x, streamed from disk, 3 loader worker(s) per run, 224x224, augment "
        "random_resized_crop+flip, normalization train")
    forced = folder.model_copy(update={"data_mode": "memory"})
    assert "held in memory" in run_info(forced, None)["data"]


def test_the_report_names_the_executor_and_the_machine_of_each_run():
    spec = build_spec(overrides={"data": "synthetic", "device": "cpu", "workers": 2})
    results = [{"method": "control", "seed": 0, "host": "a"},
               {"method": "control", "seed": 1, "host": "b"},
               {"method": "dropout", "seed": 0, "host": "a"},
               {"method": "dropout", "seed": 1}]  # an older result.json: no host
    assert nodes(results) == "a: control/seed0, dropout/seed0; b: control/seed1"
    info = run_info(spec, None, executor=PoolExecutor(2), results=results)
    assert info["executor"].startswith("pool: 2 worker process(es) on this machine")
    assert info["nodes"] == nodes(results)
    assert info["runs"] == f"{len(spec.methods)} methods x {spec.seeds} seeds"
    assert f", {PoolExecutor(2).threads} thread(s) per run" in info["device"]
    assert "executor" not in run_info(spec, None) and "nodes" not in run_info(spec, None)
