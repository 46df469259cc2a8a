"""The data and loaders of one run: which splits, in how many worker processes, and
what a worker's error looks like to the user. Used by :mod:`convdrop.lab.train.trainer`, and
by the checks before a run (:mod:`convdrop.lab.runs.preflight`, the sweep's budgets)."""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset

from convdrop.errors import DataError
from convdrop.lab.data import Datasets, load_dataset, normalize
from convdrop.lab.data import stamp as data_stamp
from convdrop.lab.data.stream import worker_message
from convdrop.lab.spec.experiment import ExperimentSpec
from convdrop.lab.train import distributed as dd
from convdrop.lab.train.engine import make_loader

__all__ = ["CURVE_TRAIN_IMAGES", "EVAL_BATCH", "curve_subset", "load_run_data",
           "loader_workers", "make_loaders", "on_cuda", "run_threads", "worker_errors"]

EVAL_BATCH = 256
CURVE_TRAIN_IMAGES = 5000  # training images scored in eval mode after every epoch, at most
MAX_LOADER_WORKERS = 8  # decoding rarely gains beyond this per run


def _load(data: str, train_size: int | None, seed: int, image_size: int | None, mode: str,
          augment: str, normalization: str, cache_dir: Path | None,
          stamp: str | None = None) -> Datasets:
    """The data; ``stamp`` is there for the cache's key only (a folder changed: load again)."""
    return normalize(load_dataset(data, train_size=train_size, seed=seed, image_size=image_size,
                                  mode=mode, augment=augment, normalization=normalization,
                                  cache_dir=cache_dir))


_datasets = functools.lru_cache(maxsize=4)(_load)


def load_run_data(spec: ExperimentSpec, seed: int, cache_dir: Path | None = None, *,
                  keep: bool = True) -> Datasets:
    """Normalized splits; seed k draws training subset k (the same for every method).
    A streamed folder caches its index and statistics in ``cache_dir``; ``keep`` holds the
    result for the next call with the same arguments (the runs of this process), while an
    image folder's files stay as they were (:func:`convdrop.lab.data.stamp`)."""
    load = _datasets if keep else _load
    return load(spec.data, spec.train_size, seed if spec.train_size else 0, spec.image_size,
                spec.data_mode, spec.augment, spec.normalization, cache_dir,
                data_stamp(spec.data) if keep else None)


def run_threads(spec: ExperimentSpec) -> int:
    """CPU threads one run computes with: its share of the cores when ``spec.workers`` runs
    share them (what the runner's worker processes set), else this process's torch threads."""
    if spec.workers > 1:
        return max(1, (os.cpu_count() or 1) // spec.workers)
    return torch.get_num_threads()


def loader_workers(spec: ExperimentSpec, streaming: bool,
                   device: torch.device | None = None) -> int:
    """DataLoader workers of one run: the spec's, else 0 in memory; for streamed data, the
    cores of the run's share (CPUs / parallel runs) left after its own compute threads
    (:func:`run_threads`; one on a GPU, which computes there), at most 8.

    More would oversubscribe the cores: on 2 cores a streamed epoch of 3,000 images took
    90.8 s with 2 loader workers beside 2 compute threads, 70.6 s with none (issue 27).
    """
    if spec.loader_workers is not None:
        return spec.loader_workers
    if not streaming:
        return 0
    share = max(1, (os.cpu_count() or 1) // spec.workers)
    on_gpu = device is not None and device.type in ("cuda", "mps")
    busy = 1 if on_gpu else min(share, run_threads(spec))
    return max(0, min(MAX_LOADER_WORKERS, share - busy))


def on_cuda(setting: bool | None, device: torch.device) -> bool:
    """A switch that defaults to on for CUDA (channels_last, amp)."""
    return device.type == "cuda" if setting is None else setting


@contextmanager
def worker_errors() -> Iterator[None]:
    """A DataError raised in a DataLoader worker (a file that no longer decodes) as one
    line, not the worker's traceback that DataLoader wraps it in."""
    try:
        yield
    except DataError as err:
        raise DataError(worker_message(str(err))) from None


def curve_subset(train: Dataset, limit: int = CURVE_TRAIN_IMAGES) -> Dataset:
    """At most ``limit`` evenly spaced training images, the same every epoch and run.

    Their eval-mode accuracy after each epoch is the learning curve's clean training
    accuracy (``train_eval_acc``); evenly spaced, so a folder listed class by class gives
    every class its share. The whole split when it is no larger.
    """
    count = len(train)
    if count <= limit:
        return train
    return Subset(train, torch.linspace(0, count - 1, limit).round().long().tolist())


def make_loaders(data: Datasets, spec: ExperimentSpec, dist: dd.Dist, generator: torch.Generator,
                 seed: int, device: torch.device | None = None,
                 ) -> tuple[dict[str, DataLoader], DistributedSampler | None]:
    """Train loader (shuffled; this rank's share under torchrun) and the four eval loaders.

    Streamed data load in :func:`loader_workers` processes (the training loader's kept
    across epochs), into pinned memory on CUDA. ``train_curve`` (:func:`curve_subset`)
    draws its loader seed from a generator of its own: scoring it leaves the global RNG,
    and so every other number of the run, as it was without it."""
    options = {"workers": loader_workers(spec, data.streaming, device),
               "pin_memory": device is not None and device.type == "cuda"}
    curve = curve_subset(data.train_scored)
    if not dist.enabled:
        return {
            "train": make_loader(data.train, spec.batch_size, shuffle=True, generator=generator,
                                 persistent=True, **options),
            "train_eval": make_loader(data.train_scored, EVAL_BATCH, shuffle=False, **options),
            "val": make_loader(data.val, EVAL_BATCH, shuffle=False, **options),
            "test": make_loader(data.test, EVAL_BATCH, shuffle=False, **options),
            "train_curve": make_loader(curve, EVAL_BATCH, shuffle=False,
                                       generator=torch.Generator(), **options),
        }, None
    batch = dd.per_rank_batch(spec.batch_size, dist.world_size)
    sampler = DistributedSampler(data.train, num_replicas=dist.world_size, rank=dist.rank,
                                 shuffle=True, seed=seed, drop_last=False)

    def part(dataset: Dataset, own_seed: bool = False) -> DataLoader:
        return make_loader(dd.shard(dataset, dist.rank, dist.world_size), EVAL_BATCH,
                           shuffle=False, generator=torch.Generator() if own_seed else None,
                           **options)

    return {
        "train": make_loader(data.train, batch, shuffle=False, sampler=sampler,
                             generator=generator, persistent=True, **options),
        "train_eval": part(data.train_scored), "val": part(data.val), "test": part(data.test),
        "train_curve": part(curve, own_seed=True),
    }, sampler
