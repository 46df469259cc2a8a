"""The folder index: compact, ordered, cached in the named folder and rebuilt when stale."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from convdrop.errors import DataError
from convdrop.lab.data import index as index_module
from convdrop.lab.data.index import index_folder

from conftest import write_image_folder


@pytest.fixture(autouse=True)
def forget_listings():
    """Each test lists afresh (or reads its cache): nothing kept from another test."""
    index_module._LISTED.clear()


def test_lists_every_split_sorted_with_labels(tmp_path):
    root = write_image_folder(tmp_path / "d", {"cat": 3, "dog": 2})
    index = index_folder(root)
    assert index.classes == ("cat", "dog") and not index.test_is_val
    train = index.splits["train"]
    assert len(train) == 5 and train.files.dtype.kind == "S"
    assert train.labels.tolist() == [0, 0, 0, 1, 1]
    assert train.path(3) == str(root / "train" / "dog" / "00000.png")
    assert all(Path(train.path(i)).is_file() for i in range(len(train)))


def test_without_test_folder_val_stands_in_with_a_warning(tmp_path):
    root = write_image_folder(tmp_path / "d", {"a": 1, "b": 1}, splits=("train", "val"))
    with pytest.warns(UserWarning, match="no test/ folder"):
        index = index_folder(root)
    assert index.test_is_val and index.splits["test"] is index.splits["val"]


def test_a_file_name_that_is_not_utf8_survives(tmp_path):
    root = write_image_folder(tmp_path / "d", {"a": 1, "b": 1})
    odd = os.fsencode(root / "train" / "a") + b"/caf\xe9.png"
    os.rename(root / "train" / "a" / "00000.png", odd)
    train = index_folder(root).splits["train"]
    assert os.fsencode(train.path(0)) == odd and Path(train.path(0)).is_file()


def test_cache_is_reused_then_rebuilt_when_a_file_is_added(tmp_path, monkeypatch):
    root = write_image_folder(tmp_path / "d", {"a": 2, "b": 2})
    cache = tmp_path / "out" / "cache"
    first = index_folder(root, cache)
    (saved,) = cache.iterdir()
    assert saved.suffix == ".npz"
    import convdrop.lab.data.index as module

    calls = []
    listing = module.list_split
    monkeypatch.setattr(module, "list_split", lambda *a: calls.append(a) or listing(*a))
    again = index_folder(root, cache)  # kept by this process
    assert calls == [] and np.array_equal(again.splits["val"].files, first.splits["val"].files)
    index_module._LISTED.clear()
    assert index_folder(root, cache).classes == ("a", "b") and calls == []  # from the cache
    os.utime(root / "train" / "a", ns=(1, 1))  # what adding or removing a file does
    write_image_folder(tmp_path / "extra", {"a": 1})
    os.rename(tmp_path / "extra" / "train" / "a" / "00000.png", root / "train" / "a" / "new.png")
    rebuilt = index_folder(root, cache)
    assert len(calls) == 3 and len(rebuilt.splits["train"]) == 5


def test_a_corrupt_cache_is_rebuilt_not_trusted(tmp_path):
    root = write_image_folder(tmp_path / "d", {"a": 2, "b": 1})
    cache = tmp_path / "cache"
    index_folder(root, cache)
    (saved,) = cache.iterdir()
    saved.write_bytes(b"garbage")
    index_module._LISTED.clear()
    assert len(index_folder(root, cache).splits["train"]) == 3


def test_layout_errors_name_the_folder(tmp_path):
    with pytest.raises(DataError, match="no such directory"):
        index_folder(tmp_path / "missing")
    root = write_image_folder(tmp_path / "d", {"a": 1}, splits=("train", "val"))
    (root / "val" / "a" / "00000.png").unlink()
    with pytest.raises(DataError, match=r"class folder .*val/a holds no \.png"):
        index_folder(root)


@pytest.mark.parametrize("content", [b"", b"GIF89a but not really", b"plain text"])
def test_a_file_that_is_not_an_image_is_named_while_listing(tmp_path, content):
    root = write_image_folder(tmp_path / "d", {"a": 2, "b": 1})
    bad = root / "test" / "b" / "x.jpg"
    bad.write_bytes(content)
    with pytest.raises(DataError, match=f"cannot read image {bad}"):
        index_folder(root)


def test_a_listing_kept_in_memory_is_saved_once_a_cache_folder_is_named(tmp_path):
    """Preflight lists without writing; the first run then saves the same listing."""
    root = write_image_folder(tmp_path / "d", {"a": 2, "b": 1})
    first = index_folder(root)
    cache = tmp_path / "out" / "cache"
    assert index_folder(root, cache) is first and len(list(cache.iterdir())) == 1


def test_the_listing_hash_follows_the_files_not_their_times_or_place(tmp_path):
    root = write_image_folder(tmp_path / "d", {"a": 2, "b": 2})
    first = index_folder(root, tmp_path / "cache").listing
    assert len(first) == 64
    index_module._LISTED.clear()
    assert index_folder(root, tmp_path / "cache").listing == first  # read back from the cache
    moved = root.rename(tmp_path / "elsewhere")
    os.utime(moved / "train" / "a")  # a touched folder, the same files
    assert index_folder(moved).listing == first
    stamp = index_module.folder_stamp(moved)
    (moved / "train" / "a" / "00001.png").rename(moved / "train" / "a" / "renamed.png")
    assert index_module.folder_stamp(moved) != stamp
    renamed = index_folder(moved).listing
    (moved / "test" / "b" / "00000.png").unlink()
    assert len({first, renamed, index_folder(moved).listing}) == 3
    assert index_module.folder_stamp(tmp_path / "no-such-folder") is None
