"""Fashion-MNIST from its four idx files, read with numpy; nothing is downloaded.

Zalando's Fashion-MNIST (MIT licence) is 60,000 training and 10,000 test images of
clothing, 28x28 grayscale, 10 classes, shipped as four files in the idx format of
LeCun's MNIST: a 4-byte magic number (two zero bytes, the element type ``0x08`` for
unsigned bytes, the number of dimensions), one big-endian uint32 per dimension, then
the values in row-major order. Images are idx3 (N, 28, 28), labels idx1 (N,).

The files are looked up, gzipped (``.gz``) or not, in a folder given as
``fashion-mnist:PATH`` (PATH itself, or torchvision's ``PATH/FashionMNIST/raw`` and
``PATH/raw``), or by default where Debian's package ``dataset-fashion-mnist`` puts
them (:data:`DEBIAN_DIR`). Every check (magic number, dimensions, truncation, image and
label counts, label range) raises :class:`DataError` naming the file; absent files
raise one line saying where it looked and how to get them.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np

from convdrop.errors import DataError

__all__ = ["CLASSES", "DEBIAN_DIR", "FILES", "find_fashion_dir", "read_fashion", "read_idx"]

DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")  # `apt-get install dataset-fashion-mnist`
FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
         "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
           "Sneaker", "Bag", "Ankle boot")
SIDE = 28
UBYTE = 0x08  # the idx type code of unsigned bytes, the only one Fashion-MNIST uses

_LAYOUT = (f"the four idx files {', '.join(FILES)} (each gzipped as .gz or not) in PATH "
           "or in torchvision's PATH/FashionMNIST/raw")


def _candidates(path: Path) -> tuple[Path, ...]:
    return path, path / "FashionMNIST" / "raw", path / "raw"


def _file(folder: Path, stem: str) -> Path | None:
    """``folder/stem`` if it exists (faster to read), else ``folder/stem.gz``, else None."""
    for name in (stem, f"{stem}.gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def find_fashion_dir(path: Path | None) -> dict[str, Path]:
    """The four files, by stem (see :data:`FILES`), from ``path`` or :data:`DEBIAN_DIR`."""
    if path is None:
        if _file(DEBIAN_DIR, FILES[0]) is None:
            raise DataError(
                f"fashion-mnist: no Fashion-MNIST files in {DEBIAN_DIR}; install them with "
                "`apt-get install dataset-fashion-mnist`, or put the four idx files "
                f"({', '.join(FILES)}, .gz or not) in a folder and use fashion-mnist:PATH")
        folder = DEBIAN_DIR
    elif not path.is_dir():
        raise DataError(f"fashion-mnist:{path}: no such directory; expected {_LAYOUT}")
    else:
        found = [c for c in _candidates(path) if _file(c, FILES[0]) is not None]
        if not found:
            looked = ", ".join(str(c) for c in _candidates(path))
            raise DataError(f"fashion-mnist:{path}: no {FILES[0]}[.gz] in {looked}; "
                            f"expected {_LAYOUT}")
        folder = found[0]
    files = {stem: _file(folder, stem) for stem in FILES}
    missing = [stem for stem, file in files.items() if file is None]
    if missing:
        raise DataError(f"fashion-mnist: {folder} lacks {', '.join(missing)} (.gz or not); "
                        f"expected {_LAYOUT}")
    return {stem: file for stem, file in files.items() if file is not None}


def _read_bytes(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
        return gzip.decompress(raw) if path.suffix == ".gz" else raw
    except OSError as err:  # unreadable, or gzip.BadGzipFile
        raise DataError(f"{path}: cannot be read ({err.strerror or err})") from None
    except (EOFError, zlib.error) as err:
        raise DataError(f"{path}: not a complete gzip file ({err or type(err).__name__})"
                        ) from None


def read_idx(path: Path, ndim: int) -> np.ndarray:
    """An idx file of unsigned bytes with ``ndim`` dimensions as a uint8 array.

    Raises ``DataError`` naming ``path`` for a wrong magic number, or a size that does not
    match the dimensions in the header (truncated, or bytes left over).
    """
    data = _read_bytes(path)
    header = 4 + 4 * ndim
    expected_magic = UBYTE << 8 | ndim
    magic = int.from_bytes(data[:4], "big") if len(data) >= 4 else None
    if magic != expected_magic:
        got = "a file shorter than 4 bytes" if magic is None else f"0x{magic:08x}"
        raise DataError(f"{path}: magic number {got}, expected 0x{expected_magic:08x} "
                        f"(an idx{ndim} file of unsigned bytes)")
    if len(data) < header:
        raise DataError(f"{path}: truncated in its header ({len(data)} bytes, expected "
                        f"{header})")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    size = int(np.prod(dims, dtype=np.int64))
    if len(data) - header != size:
        what = "truncated" if len(data) - header < size else "longer than its header says"
        raise DataError(f"{path}: {what}: {len(data) - header} bytes of data, expected "
                        f"{size} for dimensions {' x '.join(map(str, dims))}")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims).copy()


def _read_pair(images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One split as ``(images uint8 (N, 1, 28, 28), labels int64 (N,))``."""
    images, labels = read_idx(images_path, 3), read_idx(labels_path, 1)
    if images.shape[1:] != (SIDE, SIDE) or len(images) == 0:
        raise DataError(f"{images_path}: {' x '.join(map(str, images.shape))} images, "
                        f"expected N x {SIDE} x {SIDE} with N >= 1")
    if len(labels) != len(images):
        raise DataError(f"{labels_path}: {len(labels)} labels for the {len(images)} images "
                        f"of {images_path}")
    bad = np.flatnonzero(labels >= len(CLASSES))
    if len(bad):
        raise DataError(f"{labels_path}: labels must lie in [0, {len(CLASSES)}), but label "
                        f"{bad[0]} is {labels[bad[0]]}")
    return images[:, None], labels.astype(np.int64)


def read_fashion(path: Path | None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray,
                                              tuple[str, ...]]:
    """``(train_x, train_y, test_x, test_y, classes)``: images uint8 (N, 1, 28, 28), labels
    int64 (N,), from ``path`` (see :func:`find_fashion_dir`) or Debian's folder when None."""
    files = find_fashion_dir(path)
    train_x, train_y = _read_pair(files[FILES[0]], files[FILES[1]])
    test_x, test_y = _read_pair(files[FILES[2]], files[FILES[3]])
    return train_x, train_y, test_x, test_y, CLASSES
