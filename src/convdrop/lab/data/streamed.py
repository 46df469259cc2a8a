"""A folder as a :class:`Datasets` of streamed splits, and the check that keeps a folder
out of memory when it would not fit there (see :mod:`convdrop.lab.data`)."""

from __future__ import annotations

import os
from pathlib import Path

from convdrop.errors import DataError
from convdrop.lab.data.datasets import Datasets
from convdrop.lab.data.index import SplitIndex, index_folder
from convdrop.lab.data.split import subset_indices
from convdrop.lab.data.stream import StreamingImages, channel_stats
from convdrop.lab.data.transforms import eval_transform, train_transform

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "available_memory", "check_fits_in_memory",
           "read_streamed"]

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
MEMORY_HEADROOM = 0.5  # an in-memory folder may take at most this share of free RAM


def read_streamed(path: Path, size: int, train_size: int | None, seed: int, augment: str,
                   normalization: str, cache_dir: Path | None) -> Datasets:
    """A folder as :class:`StreamingImages` splits over its (cached) file index."""
    index = index_folder(path, cache_dir)
    train = index.splits["train"]
    name = f"folder:{path.name}"
    if train_size is not None:
        picked = subset_indices(train.labels, train_size, len(index.classes), seed, name)
        if picked is not None:
            train = SplitIndex(train.folder, train.files[picked], train.labels[picked])
    if normalization == "train":
        plain = eval_transform(augment, size, (0.0,) * 3, (1.0,) * 3)
        mean, std = channel_stats(train, plain, size, cache_dir=cache_dir)
    elif normalization == "imagenet":
        mean, std = IMAGENET_MEAN, IMAGENET_STD
    else:
        mean, std = (0.0,) * 3, (1.0,) * 3
    scored = eval_transform(augment, size, mean, std)
    val = StreamingImages(index.splits["val"], scored)
    return Datasets(
        train=StreamingImages(train, train_transform(augment, size, mean, std)),
        val=val,
        test=val if index.test_is_val else StreamingImages(index.splits["test"], scored),
        num_classes=len(index.classes), in_channels=3, image_size=size, name=name,
        classes=index.classes, mean=tuple(mean), std=tuple(std),
        test_is_val=index.test_is_val, streaming=True,
        train_eval=StreamingImages(train, scored), listing=index.listing,
    )


def available_memory() -> int | None:
    """Bytes of memory free now (Linux and macOS), or None where unknown."""
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_fits_in_memory(path: Path, size: int, cache_dir: Path | None) -> str:
    """Refuse an in-memory folder whose float32 images would not fit, before decoding;
    returns the folder's listing (:attr:`FolderIndex.listing`) for the runs to record."""
    index = index_folder(path, cache_dir)
    count = sum(len(index.splits[s]) for s in ("train", "val")) + (
        0 if index.test_is_val else len(index.splits["test"]))
    needed = count * 3 * size * size * 4
    free = available_memory()
    if free is not None and needed > MEMORY_HEADROOM * free:
        raise DataError(
            f"folder:{path} in memory needs about {needed / 2**30:.1f} GiB ({count} images at "
            f"{size}x{size}, float32), more than half the {free / 2**30:.1f} GiB free; stream "
            "it (data_mode = 'auto' or 'stream') or choose a smaller image_size")
    return index.listing
