"""The file index of an image folder: listed once, held compactly, cached on disk.

A streaming dataset keeps only this index in memory: per split, the file paths relative
to the split folder as one numpy byte-string array (``os.fsencode``, so names that are
not valid UTF-8 survive) and the labels as int64. Numpy arrays, unlike lists of Python
strings, are not copied page by page into every DataLoader worker as reference counts
change, so memory stays at the index's size whatever the number of workers.

Every file's header is opened once while listing (Pillow reads the format and size, not
the pixels), so an empty or unrecognizable file is a ``DataError`` naming it before any
training starts; a file whose body is truncated is found when a worker decodes it.

The index's :attr:`FolderIndex.listing` (a SHA-256 of the names and labels) is recorded by
every run trained on it, so a run is never resumed or reused on another set of images.

Listing and checking ImageNet's 1.28 M files takes minutes, so the index is cached as an
``.npz`` (no pickles) in a folder the caller names (the runner uses ``--out``/cache).
The cache key is the folder's resolved path; it is rebuilt when any split or class
folder's modification time changed (adding or removing a file changes its folder's).
"""

from __future__ import annotations

import functools
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from convdrop import _io
from convdrop._image_io import check_header
from convdrop.errors import DataError
from convdrop.lab.data.folder import check_layout, list_split, warn_val_is_test

SPLITS = ("train", "val", "test")
INDEX_VERSION = 1


@dataclass(frozen=True)
class SplitIndex:
    """The images of one split: ``files`` bytes (N,) relative to ``folder``, ``labels``
    int64 (N,)."""

    folder: bytes  # os.fsencode of the split folder
    files: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    def path(self, i: int) -> str:
        """The file of image ``i`` (a str; undecodable bytes kept by ``os.fsdecode``)."""
        return os.fsdecode(os.path.join(self.folder, self.files[i]))


@dataclass(frozen=True)
class FolderIndex:
    """Every split of one ImageFolder tree; ``test`` is ``val`` when ``test_is_val``."""

    root: Path
    classes: tuple[str, ...]
    splits: dict[str, SplitIndex]
    test_is_val: bool

    @functools.cached_property
    def listing(self) -> str:
        """SHA-256 of what the tree lists: classes, and every split's file names and labels.
        A run records it, so resuming or reusing a run after images were added, removed or
        renamed is refused (a file rewritten under its name is not seen)."""
        digest = hashlib.sha256(repr((self.classes, self.test_is_val)).encode())
        for split in SPLITS[: 2 if self.test_is_val else 3]:
            part = self.splits[split]
            digest.update(f"\n{split} {part.files.dtype.str} {len(part)}\n".encode())
            digest.update(part.files.tobytes())
            digest.update(part.labels.astype("<i8").tobytes())
        return digest.hexdigest()


def _split_index(root: Path, split: str, classes: tuple[str, ...]) -> SplitIndex:
    folder = root / split
    files, labels = list_split(folder, classes, root)
    for file in files:
        try:
            check_header(file)
        except (OSError, ValueError) as err:
            raise DataError(str(err)) from None
    prefix = len(os.fsencode(folder)) + 1
    names = np.array([os.fsencode(f)[prefix:] for f in files], dtype=np.bytes_)
    return SplitIndex(os.fsencode(folder), names, np.asarray(labels, dtype=np.int64))


def _fingerprint(root: Path, test_is_val: bool) -> str:
    """Modification times of the split folders and their class folders."""
    parts = []
    for split in SPLITS[: 2 if test_is_val else 3]:
        folder = root / split
        entries = sorted(p for p in folder.iterdir() if p.is_dir())
        for entry in (folder, *entries):
            parts.append(f"{os.fsencode(entry)!r}:{entry.stat().st_mtime_ns}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def folder_stamp(root: Path) -> str | None:
    """What tells a listing of the tree at ``root`` current (:func:`_fingerprint`: the
    modification times of its split and class folders), or None if it is not such a tree
    (reading it then says why). For keys of caches held in memory."""
    root = Path(os.path.abspath(root))
    try:
        return _fingerprint(root, not (root / "test").is_dir())
    except OSError:
        return None


def _cache_file(cache_dir: Path, root: Path) -> Path:
    key = hashlib.sha256(os.fsencode(root)).hexdigest()[:16]
    return cache_dir / f"folder-index-{key}.npz"


def _load_cached(path: Path, fingerprint: str, root: Path, classes: tuple[str, ...],
                 test_is_val: bool) -> FolderIndex | None:
    """The cached index if it is readable and current, else None (it is rebuilt)."""
    try:
        with np.load(path, allow_pickle=False) as saved:
            if (int(saved["version"]) != INDEX_VERSION or str(saved["fingerprint"]) != fingerprint
                    or tuple(saved["classes"].tolist()) != classes):
                return None
            splits = {s: SplitIndex(os.fsencode(root / s), saved[f"{s}_files"],
                                    saved[f"{s}_labels"])
                      for s in SPLITS[: 2 if test_is_val else 3]}
    except (OSError, ValueError, KeyError):
        return None
    return _assemble(root, classes, splits, test_is_val)


def _save(path: Path, index: FolderIndex, fingerprint: str) -> None:
    arrays = {"version": np.array(INDEX_VERSION), "fingerprint": np.array(fingerprint),
              "classes": np.array(index.classes)}
    for split in SPLITS[: 2 if index.test_is_val else 3]:
        arrays[f"{split}_files"] = index.splits[split].files
        arrays[f"{split}_labels"] = index.splits[split].labels
    path.parent.mkdir(parents=True, exist_ok=True)
    _io.atomic_write(path, lambda f: np.savez(f, **arrays))


def _assemble(root: Path, classes: tuple[str, ...], splits: dict[str, SplitIndex],
              test_is_val: bool) -> FolderIndex:
    if test_is_val:
        warn_val_is_test(root, stacklevel=4)  # _assemble <- index_folder <- its caller
        splits = {**splits, "test": splits["val"]}
    return FolderIndex(root, classes, splits, test_is_val)


_LISTED: dict[tuple[bytes, str], FolderIndex] = {}  # this process's listings, by fingerprint


def index_folder(root: Path, cache_dir: Path | None = None) -> FolderIndex:
    """The index of the ImageFolder tree at ``root`` (layout errors are ``DataError``s
    naming the path): this process's listing if current, else ``cache_dir``'s, else
    listed anew; saved in ``cache_dir`` (when given) if it is not there yet."""
    classes, test_is_val = check_layout(Path(root))  # its errors name the path as given
    root = Path(os.path.abspath(root))
    fingerprint = _fingerprint(root, test_is_val)
    cached = None if cache_dir is None else _cache_file(Path(cache_dir), root)
    index = _LISTED.get((os.fsencode(root), fingerprint))
    if index is None and cached is not None and cached.is_file():
        index = _load_cached(cached, fingerprint, root, classes, test_is_val)
    if index is None:
        splits = {s: _split_index(root, s, classes) for s in SPLITS[: 2 if test_is_val else 3]}
        index = _assemble(root, classes, splits, test_is_val)
    elif test_is_val:
        warn_val_is_test(root, stacklevel=2)
    _LISTED[(os.fsencode(root), fingerprint)] = index
    if cached is not None and not cached.is_file():
        _save(cached, index, fingerprint)
    return index
