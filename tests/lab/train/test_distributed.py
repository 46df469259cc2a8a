"""Process-group helpers, and two gloo processes on loopback training like one process."""

from __future__ import annotations

import json
import multiprocessing
import os
import socket
import warnings
from pathlib import Path

import pytest
import torch
import torch.distributed as tdist
from torch import nn
from torch.utils.data import DistributedSampler, TensorDataset

from convdrop.errors import LaunchError
from convdrop.lab.runs.run import execute, train_and_record
from convdrop.lab.spec.experiment import ExperimentSpec, build_spec
from convdrop.lab.train import distributed as dd
from convdrop.lab.train.engine import make_loader
from convdrop.lab.train.store import RunPaths, read_metrics
from convdrop.lab.train.trainer import Trainer

ENV = {"WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "1", "MASTER_ADDR": "127.0.0.1",
       "MASTER_PORT": "29500"}
GLOO = dd.Dist(world_size=2, rank=0, local_rank=0, device="cpu", backend="gloo")  # no group
# Global batch 16 over 48 examples: 3 full steps per epoch, 8 per rank with two ranks.
TINY = {"data": "synthetic", "train_size": 48, "epochs": 2, "seeds": 1, "batch_size": 16,
        "model_options": {"width": 8}, "lr": 5e-3}


def test_launch_env_reads_torchrun_variables_and_names_bad_ones():
    assert dd.launch_env({}) == (1, 0, 0)
    assert dd.launch_env(ENV) == (2, 1, 1)
    with pytest.raises(ValueError, match=r"RANK must be in \[0, WORLD_SIZE=2\), got 2"):
        dd.launch_env({**ENV, "RANK": "2"})
    with pytest.raises(ValueError, match="WORLD_SIZE must be an int, got 'two'"):
        dd.launch_env({**ENV, "WORLD_SIZE": "two"})
    with pytest.raises(ValueError, match="MASTER_PORT is not set; start the job with torchrun"):
        dd.launch_env({k: v for k, v in ENV.items() if k != "MASTER_PORT"})
    with pytest.raises(LaunchError, match="WORLD_SIZE must be >= 1, got 0"):
        dd.launch_env({**ENV, "WORLD_SIZE": "0"})
    with pytest.raises(LaunchError, match="LOCAL_RANK must be >= 0, got -1"):
        dd.launch_env({**ENV, "LOCAL_RANK": "-1"})


def test_setup_without_torchrun_is_a_single_process(monkeypatch):
    for name in ENV:
        monkeypatch.delenv(name, raising=False)
    with dd.process_group("cpu") as dist:
        assert dist == dd.Dist(device="cpu") and not dist.enabled and dist.is_writer
        assert not torch.distributed.is_initialized()
        assert dd.all_reduce_sums([1, 2.5], dist) == [1.0, 2.5]
        assert dd.all_gather_objects("x", dist) == ["x"]
        model = nn.Linear(2, 2)
        assert dd.wrap_model(model, dist, sync_bn=True) is model and dd.unwrap(model) is model


def test_a_run_without_dist_refuses_to_start_inside_a_torchrun_job(tmp_path, monkeypatch):
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    spec = build_spec(overrides={**TINY, "methods": ["control"]})
    with pytest.raises(ValueError, match="one of a torchrun job .* use `convdrop train`"):
        execute(spec, "control", 0, tmp_path)
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("device", ["cuda:1", "mps"])
def test_torchrun_devices_are_cpu_or_one_gpu_per_process(device):
    with pytest.raises(ValueError, match=f"under torchrun .*got {device!r}"):
        dd.setup(device, environ=ENV)


def test_sync_bn_on_cpu_is_refused_before_any_communication():
    with pytest.raises(ValueError, match="sync_bn needs CUDA devices"):
        dd.wrap_model(nn.BatchNorm2d(3), GLOO, sync_bn=True)


def test_global_batch_must_split_evenly():
    assert dd.per_rank_batch(64, 4) == 16
    with pytest.raises(ValueError, match="got batch_size=10 with world size 4"):
        dd.per_rank_batch(10, 4)
    spec = build_spec(overrides={**TINY, "batch_size": 15, "methods": ["control"]})
    with pytest.raises(ValueError, match="batch_size=15 with world size 2"):
        Trainer.create(spec, "control", 0, dist=GLOO)


def test_shards_cover_every_example_exactly_once():
    data = TensorDataset(torch.arange(7), torch.arange(7) * 10)
    parts = [dd.shard(data, rank, 3) for rank in range(3)]
    assert [len(p) for p in parts] == [3, 2, 2]
    assert sorted(torch.cat([p.tensors[0] for p in parts]).tolist()) == list(range(7))
    assert all(torch.equal(p.tensors[1], p.tensors[0] * 10) for p in parts)


def test_rank_seeds_are_reproducible_and_distinct():
    seeds = {dd.rank_seed(s, r, stream, epoch=e)
             for s in range(3) for r in range(4) for stream in (0, 1) for e in (0, 1)}
    assert len(seeds) == 3 * 4 * 2 * 2 and dd.rank_seed(1, 2) == dd.rank_seed(1, 2)
    with pytest.raises(ValueError, match="rank must be an int >= 0, got -1"):
        dd.rank_seed(0, -1)
    a, b = dd.reseed_for_rank(0, 0), dd.reseed_for_rank(0, 1)
    assert not torch.equal(torch.rand(4, generator=a), torch.rand(4, generator=b))


def test_checkpoints_restore_each_ranks_streams_at_any_world_size():
    spec = build_spec(overrides={**TINY, "methods": ["dropblock_scheduled"]})
    trainer = Trainer.create(spec, "dropblock_scheduled", 0, device="cpu")
    state = trainer.state_dict(1)  # single process: no per-rank states
    ranks = [{"generator": dd.reseed_for_rank(7, r).get_state(),
              "torch_rng": torch.get_rng_state()} for r in range(2)]
    trainer.dist = dd.Dist(world_size=2, rank=1, device="cpu", backend="gloo")
    assert trainer.load_state_dict({**state, "rank_rng": ranks}) == 1
    assert torch.equal(trainer.generator.get_state(), ranks[1]["generator"])
    trainer.load_state_dict(state)  # written by another world size: fresh rank-1 streams
    expected = dd.reseed_for_rank(0, 1, epoch=1)
    assert torch.equal(trainer.generator.get_state(), expected.get_state())
    with pytest.raises(ValueError, match="written by a run with seed 3, but this run has seed 0"):
        trainer.load_state_dict({**state, "seed": 3})


# --- two processes ---------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _same_batches_as_ddp(trainer: Trainer, seed: int) -> None:
    """Give a single-process trainer the permutation a DistributedSampler with seed uses."""
    data = trainer.loaders["train"].dataset
    trainer.sampler = DistributedSampler(data, num_replicas=1, rank=0, seed=seed)
    trainer.loaders["train"] = make_loader(data, trainer.spec.batch_size, shuffle=False,
                                           sampler=trainer.sampler)


def _worker(rank: int, port: int, spec_json: str, out: str, reports: str) -> None:
    """One rank: train two runs, save its weights, rates and write counts to ``reports``.

    It leaves with ``os._exit`` while its trainers are still alive: freeing a DDP reducer
    after its gloo group was destroyed runs the group's destructor with the GIL held, and
    that destructor joins a gloo thread which may be waiting for the GIL to free a
    tensor (a deadlock seen in several full-suite runs here). A hung rank dumps
    its stacks to stderr after 100 s.
    """
    import faulthandler

    from convdrop import _io
    from convdrop.ops import functional

    faulthandler.dump_traceback_later(100, exit=False)
    os.environ.update(WORLD_SIZE="2", RANK=str(rank), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), GLOO_SOCKET_IFNAME="lo")
    torch.set_num_threads(1)
    writes, real_write = [], _io.atomic_write
    _io.atomic_write = lambda path, write: writes.append(str(path)) or real_write(path, write)
    spec = ExperimentSpec.model_validate_json(spec_json)
    with dd.process_group("cpu") as dist:
        plain = Trainer.create(spec.model_copy(update={"augment": "none"}), "control", 0,
                               dist=dist)
        plain.fit(RunPaths(Path(reports) / f"plain{rank}"))  # only rank 0 writes there
        trainer = Trainer.create(spec, "batchnorm_dropblock", 0, dist=dist)
        result = train_and_record(trainer, RunPaths.of(Path(out), "batchnorm_dropblock", 0))
        mask = functional.block_mask((2, 4, 8, 8), 0.3, 3)  # from the rank's global RNG
    torch.save({"plain": plain.bare_model.state_dict(), "model": trainer.bare_model.state_dict(),
                "mask": mask}, Path(reports) / f"rank{rank}.pt")
    report = {"result": result, "rates": trainer.drop_scheduler.rates(),
              "steps": trainer.drop_scheduler.step_count,
              "writes": [w for w in writes if w.startswith(out)]}
    (Path(reports) / f"rank{rank}.json").write_text(json.dumps(report))
    os._exit(0)  # plain and trainer (and their reducers) are never freed


def _spawn_two(spec: ExperimentSpec, out: Path, reports: Path) -> None:
    context = multiprocessing.get_context("spawn")
    port = _free_port()
    args = (port, spec.model_dump_json(), str(out), str(reports))
    procs = [context.Process(target=_worker, args=(r, *args)) for r in range(2)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout=120)
    for proc in procs:
        if proc.is_alive():
            proc.kill()
    assert [p.exitcode for p in procs] == [0, 0], "a rank failed; see its stderr above"


def test_two_gloo_processes_train_like_one_process(tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    spec = build_spec(overrides={**TINY, "methods": ["batchnorm_dropblock"]})
    out, reports = tmp_path / "out", tmp_path / "reports"
    reports.mkdir()
    _spawn_two(spec, out, reports)
    ranks = [torch.load(reports / f"rank{r}.pt", weights_only=True) for r in range(2)]
    info = [json.loads((reports / f"rank{r}.json").read_text()) for r in range(2)]

    # Identical weights and BN buffers, identical drop rates at the same step ...
    for key, value in ranks[0]["model"].items():
        assert torch.equal(value, ranks[1]["model"][key]), key
    assert info[0]["rates"] == info[1]["rates"] and info[0]["steps"] == info[1]["steps"] == 6
    assert set(info[0]["rates"].values()) == {0.1}  # the ramp reached its target
    # ... but independent masks.
    assert not torch.equal(ranks[0]["mask"], ranks[1]["mask"])

    # Only rank 0 wrote, and one result for the job.
    assert info[1]["writes"] == [] and info[0]["writes"]
    assert sorted(p.name for p in out.rglob("*") if p.is_file()) == ["metrics.csv", "result.json"]
    result = info[0]["result"]
    assert result["world_size"] == 2 and result["epochs"] == 2
    assert info[1]["result"]["test_acc"] == result["test_acc"]  # all-reduced, not per shard

    # Same global batch, same examples per step, no randomness: DDP's averaged gradient
    # is the single-process gradient, so the weights agree to float rounding (1e-5).
    reference = Trainer.create(spec.model_copy(update={"augment": "none"}), "control", 0,
                               device="cpu")
    _same_batches_as_ddp(reference, 0)
    reference.fit(RunPaths(tmp_path / "reference"))
    for key, value in reference.bare_model.state_dict().items():
        torch.testing.assert_close(ranks[0]["plain"][key], value, atol=1e-5, rtol=1e-4)
    assert len(read_metrics(RunPaths(reports / "plain0"))) == 2
    assert not (reports / "plain1").exists()

    # With DropBlock and BN the runs differ in masks and statistics; over six runs the
    # single-process test loss varied by 0.13 across seeds, so allow 0.15.
    single = execute(spec, "batchnorm_dropblock", 0, tmp_path / "single", device="cpu")
    assert result["test_loss"] == pytest.approx(single["test_loss"], abs=0.15)
    assert result["train_loss"] == pytest.approx(single["train_loss"], abs=0.15)


def _odd_strided_1x1_model() -> nn.Module:
    """A 1x1 conv whose weight has strides a backward never produces on its size-1 dims:
    the situation of channels_last 1x1 convs (and a grayscale stem) under cuDNN, on CPU."""
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 16, 1),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 3))
    weight = model[1].weight.detach()
    model[1].weight = nn.Parameter(torch.empty_strided(weight.shape, (8, 1, 123, 77))
                                   .copy_(weight))
    return model


def _grad_strides_under_ddp(model: nn.Module, fixed: bool) -> tuple[tuple, list[str]]:
    tdist.init_process_group("gloo", store=tdist.HashStore(), rank=0, world_size=1)
    try:
        if fixed:
            dd.keep_grad_strides(model)
        ddp = nn.parallel.DistributedDataParallel(model)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ddp(torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(0))).sum() \
                .backward()
        return model[1].weight.grad.stride(), [str(w.message) for w in caught]
    finally:
        tdist.destroy_process_group()


def test_gradients_keep_their_parameters_strides_so_ddp_does_not_warn():
    model = _odd_strided_1x1_model()
    strides, caught = _grad_strides_under_ddp(model, fixed=True)  # first: DDP warns once only
    assert strides == model[1].weight.stride()
    assert not [m for m in caught if "Grad strides do not match" in m]
    unfixed = _odd_strided_1x1_model()  # the cause, without the hook
    assert _grad_strides_under_ddp(unfixed, fixed=False)[0] != unfixed[1].weight.stride()
