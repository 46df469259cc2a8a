"""CIFAR-10/100 python-pickle batches, read without letting the pickle run code.

The official ``cifar-10-batches-py`` and ``cifar-100-python`` archives are Python 2
pickles of dicts. ``b'data'`` is a numpy ``uint8`` array of shape (N, 3072) whose
rows are channel-major: 1024 red values, then 1024 green, then 1024 blue, each plane
row-major over the 32x32 image. Labels are a list of ints.

A pickle can import and call any global, so :class:`SafeUnpickler` refuses every
global except the three numpy needs to rebuild an array: ``_reconstruct`` (from
``numpy.core.multiarray``, spelled ``numpy._core.multiarray`` by numpy 2),
``numpy.ndarray`` and ``numpy.dtype``. Everything else raises before it is called.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from convdrop.errors import DataError

try:  # numpy >= 2
    from numpy._core.multiarray import _reconstruct
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core.multiarray import _reconstruct

ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}

# kind -> (directory name, train files, test file, label key, meta file, names key, classes)
LAYOUTS: dict[str, tuple[str, tuple[str, ...], str, bytes, str, bytes, int]] = {
    "cifar10": (
        "cifar-10-batches-py",
        tuple(f"data_batch_{i}" for i in range(1, 6)),
        "test_batch",
        b"labels",
        "batches.meta",
        b"label_names",
        10,
    ),
    "cifar100": (
        "cifar-100-python", ("train",), "test", b"fine_labels", "meta", b"fine_label_names", 100
    ),
}

PIXELS = 3 * 32 * 32


class ForbiddenGlobal(pickle.UnpicklingError):
    """A pickle asked for a global outside :data:`ALLOWED_GLOBALS`."""


class SafeUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the numpy array-rebuilding globals."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise ForbiddenGlobal(f"refused to load global {module}.{name}") from None


def safe_load(path: Path) -> Any:
    """Unpickle ``path`` with :class:`SafeUnpickler` (``encoding="bytes"``).

    Raises ``DataError`` naming the file for a missing, truncated or corrupt file,
    or one that asks for a forbidden global.
    """
    try:
        data = path.read_bytes()
    except OSError as err:
        raise DataError(f"cannot read {path}: {err.strerror or err}") from None
    try:
        return SafeUnpickler(io.BytesIO(data), encoding="bytes").load()
    except ForbiddenGlobal as err:
        raise DataError(
            f"{path}: {err}; only numpy arrays, dicts, lists, bytes, str and ints are "
            "accepted in a CIFAR batch"
        ) from None
    except Exception as err:  # a corrupt pickle can fail in many ways
        raise DataError(
            f"{path} is not a readable CIFAR pickle ({type(err).__name__}: {err})"
        ) from None


def expected_layout(kind: str) -> str:
    """A one-line description of the directory ``kind`` expects."""
    dirname, train_files, test_file, *_ = LAYOUTS[kind]
    files = ", ".join((*train_files, test_file))
    return f"a '{dirname}' directory (or its parent) holding {files}"


def find_cifar_dir(kind: str, path: Path) -> Path:
    """The batch directory: ``path`` itself or ``path/<dirname>``."""
    dirname, train_files, test_file, *_ = LAYOUTS[kind]
    if not path.exists():
        raise DataError(f"{kind}:{path}: no such file or directory; expected "
                        f"{expected_layout(kind)}")
    for candidate in (path, path / dirname):
        if (candidate / train_files[0]).is_file():
            break
    else:
        raise DataError(f"{kind}:{path}: no {train_files[0]} found; expected "
                        f"{expected_layout(kind)}")
    missing = [f for f in (*train_files, test_file) if not (candidate / f).is_file()]
    if missing:
        raise DataError(f"{kind}:{candidate}: missing {', '.join(missing)}; expected "
                        f"{expected_layout(kind)}")
    return candidate


def read_batch(path: Path, label_key: bytes, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """One batch file as ``(images uint8 (N, 3, 32, 32), labels int64 (N,))``."""
    batch = safe_load(path)
    if not isinstance(batch, dict) or b"data" not in batch or label_key not in batch:
        raise DataError(f"{path}: expected a dict with keys b'data' and {label_key!r}")
    data, labels = batch[b"data"], batch[label_key]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 \
            or data.shape[1] != PIXELS:
        got = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise DataError(f"{path}: b'data' must be a uint8 array of shape (N, {PIXELS}), "
                        f"got {got}")
    labels = check_labels(path, labels, label_key, num_classes)
    if len(labels) != len(data):
        raise DataError(f"{path}: {len(data)} images but {len(labels)} labels")
    return data.reshape(-1, 3, 32, 32), labels  # channel-major rows -> (N, C, H, W)


def check_labels(path: Path, labels: Any, label_key: bytes, num_classes: int) -> np.ndarray:
    """Labels as int64 (N,): a list of ints or a 1-D integer array, each in [0, num_classes).

    Nothing is coerced: a float (even 1.0), bool, string or nested list is refused, as is
    an int out of range (before numpy sees it, so 2**70 is a message, not an overflow).
    """
    if isinstance(labels, np.ndarray):
        if labels.ndim != 1 or labels.dtype.kind not in "iu":
            raise DataError(f"{path}: {label_key!r} must be a list of ints, got a "
                            f"{labels.dtype} array of shape {labels.shape}")
        values = labels.tolist()
    elif isinstance(labels, list):
        values = labels
    else:
        raise DataError(f"{path}: {label_key!r} must be a list of ints, got "
                        f"{type(labels).__name__}")
    for index, label in enumerate(values):
        if isinstance(label, bool) or not isinstance(label, (int, np.integer)):
            raise DataError(f"{path}: {label_key!r} must be a list of ints, but label {index} "
                            f"is {label!r} ({type(label).__name__})")
        if not 0 <= label < num_classes:
            raise DataError(f"{path}: labels must lie in [0, {num_classes}), but label "
                            f"{index} is {label}")
    return np.asarray([int(label) for label in values], dtype=np.int64).reshape(-1)


def read_class_names(path: Path, names_key: bytes, num_classes: int) -> tuple[str, ...]:
    """Class names from the meta file, or ``"0".."K-1"`` when it is absent or odd."""
    fallback = tuple(str(i) for i in range(num_classes))
    if not path.is_file():
        return fallback
    meta = safe_load(path)
    names = meta.get(names_key) if isinstance(meta, dict) else None
    if not isinstance(names, list) or len(names) != num_classes:
        return fallback
    return tuple(n.decode("utf-8", "replace") if isinstance(n, bytes) else str(n) for n in names)


def read_cifar(kind: str, path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray,
                                               tuple[str, ...]]:
    """``(train_x, train_y, test_x, test_y, classes)`` with images uint8 (N, 3, 32, 32)."""
    root = find_cifar_dir(kind, path)
    _, train_files, test_file, label_key, meta_file, names_key, num_classes = LAYOUTS[kind]
    parts = [read_batch(root / f, label_key, num_classes) for f in train_files]
    train_x = np.concatenate([x for x, _ in parts])
    train_y = np.concatenate([y for _, y in parts])
    test_x, test_y = read_batch(root / test_file, label_key, num_classes)
    if len(train_x) == 0 or len(test_x) == 0:
        raise DataError(f"{kind}:{root}: the train and test batches must not be empty")
    classes = read_class_names(root / meta_file, names_key, num_classes)
    return train_x, train_y, test_x, test_y, classes
