"""Local datasets for the runner, named ``KIND`` or ``KIND:PATH``; nothing is downloaded.

- ``digits`` (default): scikit-learn's 1,797 8x8 digits upsampled to 32x32 (correlated
  neighbours, where blocks differ from pixels); a stratified 60/20/20 split.
- ``cifar10:PATH`` / ``cifar100:PATH``: the python-pickle batches (PATH the batches'
  folder or its parent), read by an unpickler that runs no code (:mod:`.cifar`); 5,000
  train images (a tenth when fewer) are held out for validation. ``fashion-mnist[:PATH]``:
  the four idx files, from PATH or Debian's package (:mod:`.fashion`), held out the same.
- ``folder:PATH``: an ImageFolder tree (``train/``, ``val/``, optional ``test/``, else
  the validation images double as the test set, with a warning), RGB at ``image_size``.
- ``synthetic``: seeded 3-class images (stripes either way, blobs), 600/150/150; tests.

In-memory data sets are float32 tensors in [0, 1]; :func:`normalize` applies the train
split's per-channel ``Datasets.mean``/``std`` and augmentation runs batched in the
training loop. A folder is *streamed* by default: only its file index is held
(:mod:`.index`) and DataLoader workers decode and transform each image (:mod:`.stream`,
:mod:`.transforms`); ``mode="memory"`` decodes it into memory after checking it fits.
Splits are fixed (``SPLIT_SEED``), so every run seed is scored on the same test images;
``seed`` only picks the ``train_size`` subset. Bad paths, layouts or files raise
:class:`DataError` with the path and the expected layout.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

from convdrop import _io
from convdrop.errors import DataError, did_you_mean
from convdrop.lab.data.builtin import SYNTHETIC_CLASSES, make_synthetic, read_digits
from convdrop.lab.data.cifar import read_cifar
from convdrop.lab.data.datasets import Datasets
from convdrop.lab.data.fashion import read_fashion
from convdrop.lab.data.folder import read_image_folder
from convdrop.lab.data.index import folder_stamp
from convdrop.lab.data.split import split_off, subset
from convdrop.lab.data.streamed import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    check_fits_in_memory,
    read_streamed,
)
from convdrop.lab.data.transforms import RECIPES
from convdrop.ops import validate as v

KINDS = ("digits", "cifar10", "cifar100", "fashion-mnist", "folder", "synthetic")
PATH_KINDS = ("cifar10", "cifar100", "folder")
OPTIONAL_PATH_KINDS = ("fashion-mnist",)  # without a path: where Debian's package puts it
MODES = ("auto", "memory", "stream")
NORMALIZATIONS = ("train", "imagenet", "none")
SPLIT_SEED = 0  # fixed train/val/test split, independent of the run seed
DIGITS_FRACTIONS = (0.6, 0.2, 0.2)  # train, val, test
CIFAR_VAL_SIZE = 5000  # held out of CIFAR's or Fashion-MNIST's train images
DEFAULT_IMAGE_SIZE = 32
DEFAULT_FOLDER_SIZE = 224
NATIVE_SIZES = {"fashion-mnist": 28, "folder": DEFAULT_FOLDER_SIZE}  # else 32

# DataError lives in convdrop.errors (the readers raise it too); it stays importable from here.
__all__ = ["DataError", "Datasets", "load_dataset", "normalize", "parse_spec", "stamp",
           "streams"]


def parse_spec(spec: str) -> tuple[str, Path | None]:
    """Split ``"kind"`` or ``"kind:PATH"`` into ``(kind, Path or None)``.

    The kind is case-insensitive; ``~`` in PATH is expanded. Raises ``DataError``
    for an unknown kind, a missing PATH where one is needed, or a PATH where none is.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise DataError(f"dataset spec must be a non-empty string like 'digits', got {spec!r}")
    kind, sep, raw_path = spec.strip().partition(":")
    kind = kind.strip().lower()
    if kind not in KINDS:
        raise DataError(f"unknown dataset kind {kind!r} in spec {spec!r}"
                        f"{did_you_mean(kind, KINDS)} (expected one of digits, synthetic, "
                        "cifar10:PATH, cifar100:PATH, fashion-mnist[:PATH], folder:PATH)")
    path = Path(raw_path.strip()).expanduser() if raw_path.strip() else None
    problem = None if path is None else _io.unusable(path)
    if problem:
        raise DataError(f"dataset spec {spec!r}: its path cannot be used ({problem}); "
                        "expected a path this system can open")
    if sep and kind not in PATH_KINDS + OPTIONAL_PATH_KINDS:
        raise DataError(f"dataset spec {spec!r}: '{kind}' takes no path")
    if path is None and (sep or kind in PATH_KINDS):  # "kind:" with an empty PATH too
        raise DataError(f"dataset spec {spec!r} needs a path: '{kind}:PATH'")
    return kind, path


def load_dataset(
    spec: str = "digits",
    *,
    train_size: int | None = None,
    seed: int = 0,
    image_size: int | None = None,
    mode: str = "auto",
    augment: str = "crop+flip",
    normalization: str = "train",
    cache_dir: Path | None = None,
) -> Datasets:
    """Load a dataset by spec (see the module docstring), in memory or streamed.

    Args:
        spec: ``digits``, ``synthetic``, ``cifar10:PATH``, ``cifar100:PATH``,
            ``fashion-mnist[:PATH]`` or ``folder:PATH``.
        train_size: if given, a stratified subset of this many training images,
            between ``num_classes`` and the full train split.
        seed: picks the ``train_size`` subset; the splits themselves are fixed.
        image_size: side S of the square images; default 32 (224 for folders, 28 for
            Fashion-MNIST). Digits, CIFAR, Fashion-MNIST are resized bilinearly, folders
            resized (streamed: shorter side and centre crop, see
            :mod:`convdrop.lab.data.transforms`), synthetic drawn at S.
        mode: "auto" (folders streamed, the rest in memory), "memory" or "stream"
            (folders only).
        augment, normalization: for streamed folders, the train recipe (one of
            :data:`RECIPES`) and the statistics to normalize with ("train": measured
            on the train split, "imagenet", or "none"). In memory these are applied later
            (:func:`normalize`, the training loop's augmentation).
        cache_dir: where a streamed folder's index and statistics are cached (the runner
            passes a folder inside ``--out``); None keeps nothing.

    Returns:
        ``Datasets``; in memory its splits hold images (Tensor[N, C, S, S]) float32 in
        [0, 1] and labels (Tensor[N]) int64.
    """
    kind, path = parse_spec(spec)
    size = _check_image_size(image_size, kind)
    _check_train_size(train_size)
    v.check_nonnegative_int(seed, "seed")
    streamed = _streamed(kind, mode)
    if augment not in RECIPES:
        raise DataError(f"augment must be one of {', '.join(RECIPES)}, got {augment!r}")
    if normalization not in NORMALIZATIONS:
        raise DataError(f"normalization must be one of {', '.join(NORMALIZATIONS)}, "
                        f"got {normalization!r}")
    if streamed and path is not None:
        return read_streamed(path, size, train_size, seed, augment, normalization, cache_dir)
    listing = None
    if kind == "folder" and path is not None:
        listing = check_fits_in_memory(path, size, cache_dir)

    data = dataclasses.replace(_read(kind, path, size), listing=listing)
    if train_size is not None:
        images, labels = data.train.tensors
        picked = subset(images, labels, train_size, data.num_classes, seed, data.name)
        data = dataclasses.replace(data, train=TensorDataset(*picked))
    if normalization == "imagenet":
        return dataclasses.replace(data, mean=IMAGENET_MEAN, std=IMAGENET_STD)
    if normalization == "none":
        channels = data.in_channels
        return dataclasses.replace(data, mean=(0.0,) * channels, std=(1.0,) * channels)
    mean, std = _channel_stats(data.train.tensors[0])
    return dataclasses.replace(data, mean=mean, std=std)


def stamp(spec: str) -> str | None:
    """An image folder's :func:`~convdrop.lab.data.index.folder_stamp` (it changes when files
    are added, removed or renamed), else None: what a cache of loaded data keys on."""
    kind, path = parse_spec(spec)
    return folder_stamp(path) if kind == "folder" and path is not None else None


def streams(spec: str, mode: str) -> bool:
    """Whether ``load_dataset(spec, mode=mode)`` streams (a folder, unless forced into memory)."""
    return _streamed(parse_spec(spec)[0], mode)


def _streamed(kind: str, mode: str) -> bool:
    if mode not in MODES:
        raise DataError(f"data_mode must be one of {', '.join(MODES)}, got {mode!r}")
    if mode == "stream" and kind != "folder":
        raise DataError(f"data_mode 'stream' reads image files, and {kind} has none; use "
                        "'auto' or 'memory' (it is held in memory)")
    return kind == "folder" and mode != "memory"


def _read(kind: str, path: Path | None, size: int) -> Datasets:
    """The full splits of one kind, before any subset and without statistics."""
    if kind == "digits":
        splits = _split_three(*read_digits(), DIGITS_FRACTIONS, size)
        return _assemble(splits, tuple(str(i) for i in range(10)), "digits", size)
    if kind == "synthetic":
        splits = {s: make_synthetic(s, size) for s in ("train", "val", "test")}
        return _assemble(splits, SYNTHETIC_CLASSES, "synthetic", size)
    if kind in OPTIONAL_PATH_KINDS:
        *arrays, classes = read_fashion(path)
    elif path is None:  # parse_spec guarantees a path for the remaining kinds
        raise DataError(f"dataset kind {kind!r} needs a path: '{kind}:PATH'")
    elif kind == "folder":
        splits, classes, test_is_val = read_image_folder(path, size)
        return _assemble(splits, classes, f"folder:{path.name}", size, test_is_val)
    else:
        *arrays, classes = read_cifar(kind, path)
    return _assemble(_hold_out_val(*arrays, size), classes, kind, size)


def _assemble(splits: dict[str, tuple[torch.Tensor, torch.Tensor]], classes: tuple[str, ...],
              name: str, size: int, test_is_val: bool = False) -> Datasets:
    val = TensorDataset(*splits["val"])
    return Datasets(
        train=TensorDataset(*splits["train"]),
        val=val,
        test=val if test_is_val else TensorDataset(*splits["test"]),
        num_classes=len(classes),
        in_channels=splits["train"][0].shape[1],
        image_size=size,
        name=name,
        classes=tuple(classes),
        test_is_val=test_is_val,
    )


def normalize(data: Datasets) -> Datasets:
    """Standardize every split with the train split's per-channel mean and std.

    A channel with zero std is only centred. Returns a new ``Datasets``; a streamed one
    unchanged (its transforms normalize).
    """
    if data.streaming:
        return data
    mean = torch.tensor(data.mean).view(1, -1, 1, 1)
    std = torch.tensor(data.std).view(1, -1, 1, 1)
    std = torch.where(std > 0, std, torch.ones_like(std))

    def apply(ds: TensorDataset) -> TensorDataset:
        images, labels = ds.tensors
        return TensorDataset((images - mean) / std, labels)

    val = apply(data.val)
    test = val if data.test_is_val else apply(data.test)
    return dataclasses.replace(data, train=apply(data.train), val=val, test=test)


def _split_three(images: torch.Tensor, labels: torch.Tensor, fractions: tuple[float, ...],
                 size: int) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """A fixed stratified train/val/test split of one pool, resized to ``size``."""
    rng = np.random.default_rng(SPLIT_SEED)
    n_test = round(fractions[2] * len(labels))
    n_val = round(fractions[1] * len(labels))
    test, rest = split_off(labels, n_test, rng)
    val, train = split_off(labels[rest], n_val, rng)
    val, train = rest[val], rest[train]
    images = _resize(images, size)
    return {s: (images[i], labels[i]) for s, i in (("train", train), ("val", val), ("test", test))}


def _hold_out_val(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray,
                  test_y: np.ndarray, size: int) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """uint8 train images split into train/val, plus the test images, as [0, 1] floats."""
    labels = torch.from_numpy(train_y)
    n_val = min(CIFAR_VAL_SIZE, max(1, len(labels) // 10))
    val, train = split_off(labels, n_val, np.random.default_rng(SPLIT_SEED))

    def floats(x: np.ndarray) -> torch.Tensor:  # index the uint8 array first: 4x less memory
        return _resize(torch.from_numpy(x).float().div_(255), size)

    return {
        "train": (floats(train_x[train.numpy()]), labels[train]),
        "val": (floats(train_x[val.numpy()]), labels[val]),
        "test": (floats(test_x), torch.from_numpy(test_y)),
    }


def _resize(images: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear resize of Tensor[N, C, H, W] to (size, size); antialiased when shrinking."""
    if images.shape[-2:] == (size, size):
        return images
    shrink = size < max(images.shape[-2:])
    out = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False,
                        antialias=shrink)
    return out.clamp_(0.0, 1.0)


def _channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel (mean, std) of Tensor[N, C, H, W] (population std)."""
    std, mean = torch.std_mean(images, dim=(0, 2, 3), correction=0)
    return tuple(mean.tolist()), tuple(std.tolist())


def default_image_size(spec: str) -> int:
    """The image side of ``spec``'s data without ``image_size`` (:data:`NATIVE_SIZES`)."""
    return NATIVE_SIZES.get(parse_spec(spec)[0], DEFAULT_IMAGE_SIZE)


def _check_image_size(image_size: int | None, kind: str) -> int:
    if image_size is None:
        return NATIVE_SIZES.get(kind, DEFAULT_IMAGE_SIZE)
    return v.check_int(image_size, "image_size", 4,
                       expected="an int >= 4 (or None: 32, 224 for folders, 28 for fashion-mnist)")


def _check_train_size(train_size: int | None) -> None:
    if train_size is None:
        return
    v.check_int(train_size, "train_size", 1, expected="an int >= 1 or None")
