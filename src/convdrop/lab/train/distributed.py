"""Data-parallel training under ``torchrun``: process group, seeding, wrapping, reductions.

``torchrun`` starts one process per device and sets ``WORLD_SIZE``, ``RANK``,
``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``; :func:`setup` reads them and
joins the process group (``nccl`` on CUDA, one GPU per process: ``cuda:LOCAL_RANK``;
``gloo`` on CPU). Without them, or with ``WORLD_SIZE=1``, everything here is a no-op
and a run is the plain single-process run.

Decisions, so that W processes train like one process with the same global batch:

- Model init is seeded identically on every rank (and DDP broadcasts rank 0's
  parameters anyway). After that, :func:`reseed_for_rank` gives each rank its own
  global torch RNG and augmentation generator, so DropBlock / dropout masks and
  crops are independent across ranks rather than W copies of one draw.
- The drop-rate and LR schedulers are stepped once per optimizer step on every
  rank; every rank takes the same number of steps, so all hold the same rates.
- Evaluation runs on the bare model over an exact ``rank::W`` shard of each split
  (no padding, every example once) and the sums are all-reduced, so accuracy is
  for the whole split. BatchNorm buffers are broadcast from rank 0 first (DDP's
  own rule: rank 0's buffers are authoritative), so every rank scores one model.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as tdist
from torch import nn
from torch.utils.data import Dataset, Subset, TensorDataset

from convdrop.errors import LaunchError
from convdrop.ops import validate as v

__all__ = [
    "Dist", "all_gather_objects", "all_reduce_sums", "barrier", "broadcast_buffers",
    "check_sync_bn", "keep_grad_strides", "launch_env", "per_rank_batch", "process_group",
    "rank_seed", "reseed_for_rank", "setup", "shard", "teardown", "unwrap", "wrap_model",
]

MASK_STREAM, AUGMENT_STREAM = 0, 1  # independent seed streams of one rank


@dataclass(frozen=True)
class Dist:
    """Where this process sits in the job; the default is a single process."""

    world_size: int = 1  # processes in the job (all nodes)
    rank: int = 0  # this process, 0..world_size-1; rank 0 writes every file
    local_rank: int = 0  # this process on its node; picks the GPU
    device: str = "auto"  # the device this process trains on
    backend: str | None = None  # "gloo" | "nccl"; None when single-process

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_writer(self) -> bool:
        return self.rank == 0


def _env_int(environ: Mapping[str, str], name: str, default: int) -> int:
    raw = environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise LaunchError(f"environment variable {name} must be an int, got {raw!r}") from None


def launch_env(environ: Mapping[str, str] | None = None) -> tuple[int, int, int]:
    """``(world_size, rank, local_rank)`` from torchrun's variables; ``(1, 0, 0)`` without."""
    environ = os.environ if environ is None else environ
    world_size = _env_int(environ, "WORLD_SIZE", 1)
    rank = _env_int(environ, "RANK", 0)
    local_rank = _env_int(environ, "LOCAL_RANK", 0)
    if world_size < 1:
        raise LaunchError(f"environment variable WORLD_SIZE must be >= 1, got {world_size}")
    if not 0 <= rank < world_size:
        raise LaunchError(f"environment variable RANK must be in [0, WORLD_SIZE={world_size}), "
                         f"got {rank}")
    if local_rank < 0:
        raise LaunchError(f"environment variable LOCAL_RANK must be >= 0, got {local_rank}")
    if world_size > 1:
        for name in ("MASTER_ADDR", "MASTER_PORT"):
            if not environ.get(name):
                raise LaunchError(f"WORLD_SIZE={world_size} but environment variable {name} is "
                                 "not set; start the job with torchrun")
    return world_size, rank, local_rank


def _process_device(device: str, local_rank: int) -> str:
    """The device of one process of a multi-process job: ``cpu`` or ``cuda:LOCAL_RANK``."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        return "cpu"
    if device != "cuda":
        raise LaunchError(
            f"device must be 'auto', 'cpu' or 'cuda' under torchrun (each process takes "
            f"cuda:LOCAL_RANK; gloo on CPU, nccl on CUDA), got {device!r}"
        )
    if not torch.cuda.is_available() or local_rank >= torch.cuda.device_count():
        raise LaunchError(f"device 'cuda' needs GPU {local_rank} (LOCAL_RANK) but this node has "
                         f"{torch.cuda.device_count() if torch.cuda.is_available() else 0}")
    return f"cuda:{local_rank}"


def setup(device: str = "auto", *, environ: Mapping[str, str] | None = None) -> Dist:
    """Join the torchrun job (if any) and return where this process sits in it."""
    world_size, rank, local_rank = launch_env(environ)
    if world_size == 1:
        return Dist(device=device)
    target = _process_device(device, local_rank)
    backend = "nccl" if target.startswith("cuda") else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(local_rank)
    if not tdist.is_initialized():
        tdist.init_process_group(backend, init_method="env://", world_size=world_size,
                                 rank=rank)
    return Dist(world_size, rank, local_rank, target, backend)


def teardown(dist: Dist) -> None:
    """Leave the process group that :func:`setup` joined (no-op for a single process)."""
    if dist.enabled and tdist.is_initialized():
        tdist.destroy_process_group()


@contextmanager
def process_group(device: str = "auto") -> Iterator[Dist]:
    """``with process_group("auto") as dist:`` setup, then teardown even on errors."""
    dist = setup(device)
    try:
        yield dist
    finally:
        teardown(dist)


def rank_seed(seed: int, rank: int, stream: int = MASK_STREAM, *, epoch: int = 0) -> int:
    """A 32-bit seed for ``(seed, rank, stream, epoch)``; each tuple gets an unrelated stream."""
    for name, value in (("seed", seed), ("rank", rank), ("stream", stream), ("epoch", epoch)):
        v.check_nonnegative_int(value, name)
    return int(np.random.SeedSequence([seed, rank, stream, epoch]).generate_state(1)[0])


def reseed_for_rank(seed: int, rank: int, *, epoch: int = 0) -> torch.Generator:
    """Seed the global torch RNG (masks) per rank; return the rank's augmentation generator.

    Call it after the model is built (init must match across ranks), before training;
    ``epoch`` > 0 gives fresh streams for a resume that cannot restore the saved ones.
    """
    torch.manual_seed(rank_seed(seed, rank, MASK_STREAM, epoch=epoch))
    return torch.Generator().manual_seed(rank_seed(seed, rank, AUGMENT_STREAM, epoch=epoch))


def per_rank_batch(batch_size: int, world_size: int) -> int:
    """Each rank's share of the global ``batch_size``; it must divide evenly."""
    if batch_size % world_size:
        raise LaunchError(
            f"batch_size is the global batch and must be divisible by the world size: got "
            f"batch_size={batch_size} with world size {world_size}; use a multiple of "
            f"{world_size}"
        )
    return batch_size // world_size


def shard(dataset: Dataset, rank: int, world_size: int) -> Dataset:
    """Examples ``rank, rank + W, ...``: W shards that cover the set exactly once (sliced
    tensors in memory, a ``Subset`` of a streamed dataset)."""
    if isinstance(dataset, TensorDataset):
        return TensorDataset(*(tensor[rank::world_size] for tensor in dataset.tensors))
    return Subset(dataset, range(rank, len(dataset), world_size))


def _comm_device(dist: Dist) -> torch.device:
    return torch.device(dist.device if dist.backend == "nccl" else "cpu")


def all_reduce_sums(values: Sequence[float], dist: Dist) -> list[float]:
    """Element-wise sums of ``values`` over all ranks (float64); unchanged if single."""
    if not dist.enabled:
        return [float(x) for x in values]
    tensor = torch.tensor([float(x) for x in values], dtype=torch.float64,
                          device=_comm_device(dist))
    tdist.all_reduce(tensor)
    return tensor.tolist()


def all_gather_objects(obj: Any, dist: Dist) -> list[Any]:
    """Every rank's ``obj``, in rank order (``[obj]`` if single)."""
    if not dist.enabled:
        return [obj]
    gathered: list[Any] = [None] * dist.world_size
    tdist.all_gather_object(gathered, obj)
    return gathered


def barrier(dist: Dist) -> None:
    """Wait for every rank (no-op if single)."""
    if dist.enabled:
        tdist.barrier()


def broadcast_buffers(model: nn.Module, dist: Dist) -> None:
    """Copy rank 0's buffers (BatchNorm running statistics) to every rank."""
    if not dist.enabled:
        return
    with torch.no_grad():
        for buffer in unwrap(model).buffers():
            tdist.broadcast(buffer, src=0)


def check_sync_bn(sync_bn: bool, dist: Dist) -> None:
    """SyncBatchNorm runs on GPUs only; in a single process it changes nothing."""
    if sync_bn and dist.enabled and dist.backend != "nccl":
        raise LaunchError(f"sync_bn needs CUDA devices (torch's SyncBatchNorm does not run on "
                         f"{dist.device!r}); leave out --sync-bn or use --device cuda")


def wrap_model(model: nn.Module, dist: Dist, *, sync_bn: bool = False) -> nn.Module:
    """DistributedDataParallel around ``model`` (already on its device); as is if single.

    ``sync_bn`` converts BatchNorm to SyncBatchNorm (statistics over the global batch);
    torch runs SyncBatchNorm on GPUs only, so it is an error on CPU.
    """
    check_sync_bn(sync_bn, dist)
    if not dist.enabled:
        return model
    if sync_bn:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    keep_grad_strides(model)
    device_ids = [dist.local_rank] if dist.backend == "nccl" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=device_ids)


def keep_grad_strides(model: nn.Module) -> None:
    """Give every gradient its parameter's exact strides before DDP copies it into a bucket.

    DDP lays out each bucket view with its parameter's strides and warns, once per rank,
    "Grad strides do not match bucket view strides" when a gradient differs. Autograd
    promises a gradient its parameter's strides only on dims longer than 1; under
    channels_last, 1x1 convolutions and a first convolution on grayscale images have
    weights with size-1 dims, whose strides a convolution's backward may set its own way.
    A post-accumulate-grad hook runs before DDP's own hook, so copying the few such
    gradients (only parameters with a size-1 dim, only when the strides differ) removes
    the cause of the warning, not just the warning.
    """
    for param in model.parameters():
        if param.requires_grad and 1 in param.shape:
            param.register_post_accumulate_grad_hook(_restride_grad)


def _restride_grad(param: torch.Tensor) -> None:
    grad = param.grad
    if grad is not None and grad.stride() != param.stride():
        param.grad = torch.empty_strided(param.shape, param.stride(), dtype=grad.dtype,
                                         device=grad.device).copy_(grad)


def unwrap(model: nn.Module) -> nn.Module:
    """The bare model inside DistributedDataParallel (or ``model`` itself)."""
    if isinstance(model, nn.parallel.DistributedDataParallel):
        return model.module
    return model
