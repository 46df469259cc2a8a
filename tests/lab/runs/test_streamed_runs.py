"""Streamed folders in the runner: `compare` end to end with loader workers, and two gloo
ranks that each read a disjoint half of the training images per epoch and score every
evaluation image exactly once between them."""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import socket
from pathlib import Path

import pytest

from convdrop.cli import main
from convdrop.errors import RunFolderError
from convdrop.lab.runs.run import execute
from convdrop.lab.spec.experiment import ExperimentSpec, build_spec
from convdrop.lab.train.store import RunPaths, read_metrics

from conftest import write_image_folder


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("images") / "shapes"
    return write_image_folder(root, {"a": 12, "b": 12}, size=(24, 20))


def test_compare_streams_a_folder_with_loader_workers(folder, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["compare", "--data", f"folder:{folder}", "--image-size", "32",
                 "--workers-per-run", "2", "--epochs", "2", "--seeds", "1", "--methods",
                 "control,dropblock", "--model-option", "width=8", "--batch-size", "8",
                 "--out", str(out)])
    assert code == 0, capsys.readouterr()
    runs = json.loads((out / "results.json").read_text())
    assert [(r["method"], r["status"]) for r in runs] == [("control", "ok"), ("dropblock", "ok")]
    rows = read_metrics(RunPaths.of(out, "dropblock", 0))
    assert len(rows) == 2 and all(float(r["images_per_s"]) > 0 for r in rows)
    cached = sorted(p.name.split("-")[0] for p in (out / "cache").iterdir())
    assert cached == ["channel", "folder"]  # index and statistics, inside --out
    config = json.loads((out / "config.json").read_text())
    assert (config["image_size"], config["loader_workers"]) == (32, 2)


# --- two gloo ranks ------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _rank(rank: int, port: int, spec_json: str, cache: str, report: str) -> None:
    """Record which files this rank decodes: two training epochs, then the test split."""
    import torch

    from convdrop.lab.data import stream
    from convdrop.lab.train import distributed as dd
    from convdrop.lab.train.trainer import Trainer

    os.environ.update(WORLD_SIZE="2", RANK=str(rank), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), GLOO_SOCKET_IFNAME="lo")
    torch.set_num_threads(1)
    reads: list[str] = []
    real = stream.read_rgb
    stream.read_rgb = lambda path: reads.append(path) or real(path)
    spec = ExperimentSpec.model_validate_json(spec_json)
    log = {}
    with dd.process_group("cpu") as dist:
        trainer = Trainer.create(spec, "control", 0, dist=dist, cache_dir=Path(cache))
        for epoch in (0, 1):
            reads.clear()
            trainer.sampler.set_epoch(epoch)
            for _ in trainer.loaders["train"]:
                pass
            log[f"train{epoch}"] = list(reads)
        reads.clear()
        scores = trainer.evaluate("test")
        log["test"] = list(reads)
        log["test_count"] = len(trainer.loaders["test"].dataset)
        log["accuracy"] = scores.accuracy
    Path(report).write_text(json.dumps(log))
    os._exit(0)  # see tests/lab/test_distributed.py: no DDP teardown at exit


def test_two_gloo_ranks_read_disjoint_halves_and_score_every_image_once(folder, tmp_path,
                                                                          monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    spec = build_spec(overrides={"data": f"folder:{folder}", "image_size": 16,
                                 "loader_workers": 0, "batch_size": 8, "epochs": 1,
                                 "methods": ["control"], "model_options": {"width": 8}})
    context = multiprocessing.get_context("spawn")
    port, reports = _free_port(), [tmp_path / f"rank{r}.json" for r in range(2)]
    procs = [context.Process(target=_rank, args=(r, port, spec.model_dump_json(),
                                                 str(tmp_path / "cache"), str(reports[r])))
             for r in range(2)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout=120)
        if proc.is_alive():
            proc.kill()
    assert [p.exitcode for p in procs] == [0, 0], "a rank failed; see its stderr above"
    logs = [json.loads(r.read_text()) for r in reports]
    train = sorted(str(p) for p in (folder / "train").rglob("*.png"))
    for epoch in ("train0", "train1"):
        halves = [set(log[epoch]) for log in logs]
        assert len(logs[0][epoch]) == len(logs[1][epoch]) == 12
        assert not halves[0] & halves[1] and sorted(halves[0] | halves[1]) == train
    assert logs[0]["train0"] != logs[0]["train1"]  # reshuffled per epoch
    test = sorted(str(p) for p in (folder / "test").rglob("*.png"))
    assert sorted(logs[0]["test"] + logs[1]["test"]) == test  # each exactly once
    assert logs[0]["test_count"] + logs[1]["test_count"] == 24
    assert logs[0]["accuracy"] == logs[1]["accuracy"]  # all-reduced over both shards


# --- small pieces ---------------------------------------------------------------------


@pytest.mark.parametrize("cores, threads, workers, device, expected", [
    (2, 2, 1, "cpu", 0),  # the audit's 2-core machine: 90.8 s an epoch with 2, 70.6 with 0
    (2, 2, 2, "cpu", 0),
    (2, 2, 1, "cuda", 1),  # a GPU run keeps one core for itself
    (16, 8, 1, "cpu", 8),
    (16, 16, 1, "cpu", 0),
    (16, 2, 4, "cpu", 0),  # each of 4 runs computes with 4 threads of its 4 cores
    (16, 2, 4, "cuda", 3),
    (64, 1, 1, "cuda", 8),  # at most 8
])
def test_loader_workers_default_to_the_cores_a_run_leaves(monkeypatch, cores, threads, workers,
                                                          device, expected):
    import torch

    from convdrop.lab.train import run_data

    monkeypatch.setattr(run_data.os, "cpu_count", lambda: cores)
    monkeypatch.setattr(run_data.torch, "get_num_threads", lambda: threads)
    spec = build_spec(overrides={"methods": ["control"], "workers": workers})
    assert run_data.loader_workers(spec, True, torch.device(device)) == expected
    assert run_data.loader_workers(spec, streaming=False) == 0
    assert run_data.loader_workers(spec.model_copy(update={"loader_workers": 3}), False) == 3


def test_on_cuda_defaults_on_for_cuda_only():
    import torch

    from convdrop.lab.train import run_data

    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert [run_data.on_cuda(None, cuda), run_data.on_cuda(None, cpu)] == [True, False]
    assert [run_data.on_cuda(False, cuda), run_data.on_cuda(True, cpu)] == [False, True]


def test_a_worker_error_comes_back_as_its_own_line():
    from convdrop.lab.data.stream import worker_message

    wrapped = ("Caught DataError in DataLoader worker process 0.\nOriginal Traceback (most "
               "recent call last):\n  File \"x.py\", line 1, in f\nconvdrop.errors.DataError: "
               "cannot read image /d/a.png (empty file)\n")
    assert worker_message(wrapped) == "cannot read image /d/a.png (empty file)"
    assert worker_message("plain") == "plain"


def test_a_file_broken_after_listing_stops_the_run_with_one_line(folder, tmp_path, capsys):
    """Listed, then truncated: the worker meets it while training; the run records it."""
    import shutil

    copy = shutil.copytree(folder, tmp_path / "copy")
    out = tmp_path / "out"
    args = ["train", "--data", f"folder:{copy}", "--image-size", "16", "--workers-per-run",
            "1", "--epochs", "1", "--method", "control", "--model-option", "width=8",
            "--out", str(out)]
    from convdrop.lab.data.index import index_folder

    index_folder(copy, out / "cache")  # the listing the run will reuse
    (copy / "train" / "b" / "00003.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    assert main(args) != 0
    err = capsys.readouterr().err.strip().splitlines()
    bad = copy / "train" / "b" / "00003.png"
    assert err[-1].startswith(f"convdrop train: error: cannot read image {bad} (")
    assert not any("Traceback" in line or "worker process" in line for line in err)


# --- the folder changed under a run ------------------------------------------------------

def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_a_run_is_not_resumed_or_reused_after_images_were_added_or_removed(folder, tmp_path,
                                                                          capsys):
    """The bit-identical resume holds only on the same images: the folder's listing is in
    the run's checks, so a changed folder is one line (the folder and --restart), before
    anything is printed or written, not a run that silently continues on other files."""
    images, out = shutil.copytree(folder, tmp_path / "images"), tmp_path / "out"
    shared = ["--data", f"folder:{images}", "--image-size", "16", "--workers-per-run", "0",
              "--epochs", "2", "--model-option", "width=4", "--batch-size", "8", "--quiet",
              "--out", str(out)]
    train, compare = ["train", *shared, "--method", "control"], \
        ["compare", *shared, "--methods", "control", "--seeds", "1", "--workers", "1"]
    assert main([*train, "--stop-after", "1"]) == 0  # as if killed after epoch 1
    (images / "train" / "a" / "00003.png").unlink()
    run = RunPaths.of(out, "control", 0)
    before = _files(out)
    capsys.readouterr()
    for argv in ([*train, "--resume"], compare):
        assert main(argv) == 2
        captured = capsys.readouterr()
        (line,) = captured.err.strip().splitlines()
        assert captured.out == "" and f"{run.checkpoint}: folder:{images} lists other images " \
            "than when this run was checkpointed" in line and "--restart control/seed0" in line
        assert _files(out) == before
    spec = build_spec(overrides={"data": f"folder:{images}", "image_size": 16,
                                 "loader_workers": 0, "epochs": 2, "batch_size": 8,
                                 "methods": ["control"], "model_options": {"width": 4},
                                 "workers": 1})
    with pytest.raises(RunFolderError, match="lists other images"):  # the trainer checks too
        execute(spec, "control", 0, out)
    assert main([*compare, "--restart", "control/seed0"]) == 0  # on the folder as it is
    shutil.copyfile(folder / "train" / "a" / "00003.png", images / "train" / "a" / "new.png")
    before = _files(out)
    capsys.readouterr()
    assert main(compare) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and f"{run.result}: folder:{images} lists other images than " \
        "when this run finished" in captured.err and _files(out) == before


# --- streamed folders under --workers (run workers with loader workers of their own) ---


@pytest.fixture
def in_tmp(tmp_path, monkeypatch) -> Path:
    """A small ImageFolder tree at ``DATA`` in the current folder, which is ``tmp_path``."""
    monkeypatch.chdir(tmp_path)
    write_image_folder(tmp_path / "DATA", {"a": 6, "b": 6}, size=(16, 16))
    return tmp_path


def test_the_readme_recipe_streams_a_folder_over_two_run_workers(in_tmp, capsys):
    """The README's ``--data folder:PATH ... --workers 2`` recipe, exactly as it is typed;
    on a machine with cores to spare its runs start DataLoader workers of their own."""
    code = main(["compare", "--data", "folder:DATA", "--methods", "control,dropout",
                 "--seeds", "1", "--epochs", "1", "--image-size", "16", "--workers", "2"])
    assert code == 0, capsys.readouterr().err
    runs = json.loads((in_tmp / "results" / "regularizers" / "results.json").read_text())
    assert [(r["method"], r["status"]) for r in runs] == [("control", "ok"), ("dropout", "ok")]


@pytest.mark.slow  # two more run workers; the job with children in test_workers covers it
def test_two_run_workers_each_with_a_loader_worker_train(in_tmp, capsys):
    """Loader workers asked for explicitly, so every machine starts them (the default may
    give none on a machine with few cores)."""
    code = main(["compare", "--data", "folder:DATA", "--methods", "control,dropout",
                 "--seeds", "1", "--epochs", "1", "--image-size", "16", "--workers", "2",
                 "--workers-per-run", "1", "--quiet", "--out", "out"])
    assert code == 0, capsys.readouterr().err
    assert json.loads((in_tmp / "out" / "config.json").read_text())["loader_workers"] == 1
