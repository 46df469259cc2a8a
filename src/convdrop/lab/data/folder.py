"""Image folders in the ImageFolder layout, decoded with Pillow into memory.

Layout: ``root/train/<class>/*.png|jpg|jpeg``, ``root/val/<class>/...`` and an
optional ``root/test/<class>/...``. Class names are the sorted folder names under
``train/``; ``val/`` and ``test/`` may hold a subset of them. Hidden entries and
files with other extensions are skipped. Every image is converted to RGB and
resized (bilinear, aspect ratio not kept) to ``image_size`` x ``image_size``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from convdrop._image_io import decode_image
from convdrop.errors import DataError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
LAYOUT = "root/train/<class>/*.png|jpg|jpeg, root/val/<class>/..., optional root/test/<class>/..."


def _layout_error(path: Path, problem: str) -> DataError:
    return DataError(f"folder:{path}: {problem}; expected {LAYOUT}")


def _listdir(folder: Path) -> list[Path]:
    try:
        return sorted(p for p in folder.iterdir() if not p.name.startswith("."))
    except OSError as err:
        raise DataError(f"cannot list {folder}: {err.strerror or err}") from None


def _class_dirs(split_dir: Path) -> list[Path]:
    return [d for d in _listdir(split_dir) if d.is_dir()]


def _image_files(class_dir: Path) -> list[Path]:
    return [f for f in _listdir(class_dir)
            if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS]


def _square_rgb(size: int) -> Callable[[Image.Image], Image.Image]:
    return lambda img: img.convert("RGB").resize((size, size), Image.Resampling.BILINEAR)


def _read_image(path: Path, image_size: int) -> np.ndarray:
    """One image as uint8 (H, W, 3); ``DataError`` naming the file if Pillow cannot read it."""
    try:
        return decode_image(path, _square_rgb(image_size))
    except (OSError, ValueError) as err:
        raise DataError(str(err)) from None


def list_split(split_dir: Path, classes: tuple[str, ...],
               root: Path) -> tuple[list[Path], list[int]]:
    """The image files of one split folder, sorted by class then name, and their labels."""
    dirs = _class_dirs(split_dir)
    if not dirs:
        raise _layout_error(root, f"{split_dir} holds no class folders")
    unknown = [d.name for d in dirs if d.name not in classes]
    if unknown:
        raise _layout_error(root, f"{split_dir} has classes not in train/: {', '.join(unknown)}")
    files: list[Path] = []
    labels: list[int] = []
    for class_dir in dirs:
        found = _image_files(class_dir)
        if not found:
            raise _layout_error(root, f"class folder {class_dir} holds no .png/.jpg/.jpeg files")
        files.extend(found)
        labels.extend([classes.index(class_dir.name)] * len(found))
    return files, labels


def check_layout(root: Path) -> tuple[tuple[str, ...], bool]:
    """``(classes, test_is_val)`` of the ImageFolder tree at ``root``, or ``DataError``."""
    if not root.is_dir():
        problem = "not a directory" if root.exists() else "no such directory"
        raise _layout_error(root, problem)
    if not (root / "train").is_dir():
        raise _layout_error(root, "no train/ folder")
    if not (root / "val").is_dir():
        raise _layout_error(root, "no val/ folder")
    classes = tuple(d.name for d in _class_dirs(root / "train"))
    if not classes:
        raise _layout_error(root, f"{root / 'train'} holds no class folders")
    return classes, not (root / "test").is_dir()


def warn_val_is_test(root: Path, stacklevel: int) -> None:
    """Without ``root/test`` the validation images double as the test set; say so, since a
    test score chosen on the same images it is reported on is optimistic."""
    warnings.warn(f"folder:{root} has no test/ folder; the val/ images are used as the test "
                  "set", UserWarning, stacklevel=stacklevel + 1)


def _read_split(split_dir: Path, classes: tuple[str, ...], image_size: int,
                root: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """``(images float32 (N, 3, S, S) in [0, 1], labels int64 (N,))`` for one split folder."""
    files, labels = list_split(split_dir, classes, root)
    images = [_read_image(f, image_size) for f in files]
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float().div_(255)  # (N, 3, S, S)
    return x.contiguous(), torch.tensor(labels, dtype=torch.int64)


def read_image_folder(root: Path, image_size: int) -> tuple[
        dict[str, tuple[torch.Tensor, torch.Tensor]], tuple[str, ...], bool]:
    """``(splits, classes, test_is_val)`` for an ImageFolder tree at ``root``, decoded into
    memory; ``splits`` maps ``"train"``, ``"val"`` and ``"test"`` to ``(images, labels)``
    (the val pair again, with a warning, when there is no ``test/``)."""
    classes, test_is_val = check_layout(root)
    splits = {s: _read_split(root / s, classes, image_size, root) for s in ("train", "val")}
    splits["test"] = (splits["val"] if test_is_val
                      else _read_split(root / "test", classes, image_size, root))
    if test_is_val:
        warn_val_is_test(root, stacklevel=4)  # read_image_folder <- _read <- load_dataset
    return splits, classes, test_is_val
