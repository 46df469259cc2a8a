"""Fashion-MNIST from idx files the tests write: round trips, layouts, and every bad file
named in one line."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch

from convdrop.errors import ArgumentError, DataError
from convdrop.lab.data import fashion, load_dataset, parse_spec
from convdrop.lab.data.fashion import CLASSES, find_fashion_dir, read_fashion, read_idx

from conftest import idx_bytes, write_fashion_mnist

TRAIN_IMAGES, TRAIN_LABELS = "train-images-idx3-ubyte", "train-labels-idx1-ubyte"
TEST_IMAGES, TEST_LABELS = "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"


@pytest.mark.parametrize("gz", [True, False])
def test_read_fashion_returns_the_written_arrays(tmp_path: Path, gz: bool) -> None:
    raw = write_fashion_mnist(tmp_path, gz=gz)
    train_x, train_y, test_x, test_y, classes = read_fashion(tmp_path)
    assert train_x.dtype == np.uint8 and train_x.shape == (40, 1, 28, 28)
    assert train_y.dtype == np.int64 and train_y.shape == (40,)
    assert np.array_equal(train_x[:, 0], raw[TRAIN_IMAGES])
    assert np.array_equal(test_x[:, 0], raw[TEST_IMAGES])
    assert train_y.tolist() == raw[TRAIN_LABELS].tolist()
    assert test_y.tolist() == [i % 10 for i in range(20)]
    assert classes == CLASSES and len(classes) == 10


def test_load_dataset_splits_shapes_and_pixels(tmp_path: Path) -> None:
    raw = write_fashion_mnist(tmp_path, n_train=50, n_test=30)
    data = load_dataset(f"fashion-mnist:{tmp_path}", normalization="none")
    assert (data.name, data.num_classes, data.in_channels, data.image_size) == (
        "fashion-mnist", 10, 1, 28)
    train, val, test = (split.tensors for split in (data.train, data.val, data.test))
    assert len(val[1]) == 5 and len(train[1]) == 45  # a tenth held out for validation
    assert test[0].shape == (30, 1, 28, 28) and test[0].dtype == torch.float32
    assert test[1].dtype == torch.int64 and test[1].tolist() == [i % 10 for i in range(30)]
    expected = torch.from_numpy(raw[TEST_IMAGES]).float() / 255  # the test set, in order
    assert torch.equal(test[0][:, 0], expected)
    assert 0.0 <= float(train[0].min()) and float(train[0].max()) <= 1.0
    assert data.mean == (0.0,) and data.std == (1.0,) and data.classes[-1] == "Ankle boot"


def test_image_size_resizes_and_train_size_subsets(tmp_path: Path) -> None:
    write_fashion_mnist(tmp_path, n_train=100)
    data = load_dataset(f"fashion-mnist:{tmp_path}", image_size=32, train_size=20, seed=3)
    images, labels = data.train.tensors
    assert images.shape == (20, 1, 32, 32) and data.image_size == 32
    assert torch.bincount(labels, minlength=10).tolist() == [2] * 10  # stratified
    with pytest.raises(ArgumentError, match="train_size=95 exceeds the 90 training images"):
        load_dataset(f"fashion-mnist:{tmp_path}", train_size=95)


@pytest.mark.parametrize("layout", ["FashionMNIST/raw", "raw"])
def test_torchvision_layouts_are_found(tmp_path: Path, layout: str) -> None:
    write_fashion_mnist(tmp_path / layout, gz=False)
    files = find_fashion_dir(tmp_path)
    assert files[TRAIN_IMAGES] == tmp_path / layout / TRAIN_IMAGES
    if layout == "FashionMNIST/raw":  # PATH/FashionMNIST works too (its raw/)
        assert find_fashion_dir(tmp_path / "FashionMNIST")[TEST_LABELS].parent.name == "raw"


def test_unzipped_file_is_read_when_both_are_there(tmp_path: Path) -> None:
    write_fashion_mnist(tmp_path, gz=True)
    write_fashion_mnist(tmp_path, gz=False)
    assert find_fashion_dir(tmp_path)[TRAIN_LABELS].name == TRAIN_LABELS


def test_without_a_path_debian_folder_is_read(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    write_fashion_mnist(tmp_path / "debian")
    monkeypatch.setattr(fashion, "DEBIAN_DIR", tmp_path / "debian")
    assert parse_spec("Fashion-MNIST") == ("fashion-mnist", None)
    assert len(load_dataset("fashion-mnist").test) == 20


def test_specs_with_and_without_a_path() -> None:
    assert parse_spec("fashion-mnist:~/fm") == ("fashion-mnist", Path.home() / "fm")
    with pytest.raises(DataError, match="'fashion-mnist:' needs a path"):
        parse_spec("fashion-mnist:")  # an empty $DIR must not fall back to Debian's copy


# ---------------------------------------------------------------- absent files


def test_absent_debian_files_say_how_to_install(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fashion, "DEBIAN_DIR", tmp_path / "nothing")
    with pytest.raises(DataError) as info:
        load_dataset("fashion-mnist")
    message = str(info.value)
    assert "\n" not in message and str(tmp_path / "nothing") in message
    assert "apt-get install dataset-fashion-mnist" in message and "fashion-mnist:PATH" in message


def test_absent_path_and_empty_folder_name_where_it_looked(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"fashion-mnist:.*nowhere: no such directory; expected"
                       r" the four idx files train-images-idx3-ubyte"):
        load_dataset(f"fashion-mnist:{tmp_path / 'nowhere'}")
    with pytest.raises(DataError) as info:
        load_dataset(f"fashion-mnist:{tmp_path}")
    message = str(info.value)
    assert f"no {TRAIN_IMAGES}[.gz] in {tmp_path}, {tmp_path / 'FashionMNIST' / 'raw'}" in message


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    write_fashion_mnist(tmp_path)
    (tmp_path / f"{TEST_LABELS}.gz").unlink()
    with pytest.raises(DataError, match=f"{tmp_path} lacks {TEST_LABELS} "):
        load_dataset(f"fashion-mnist:{tmp_path}")


# ---------------------------------------------------------------- bad files


def _images(n: int = 3, side: int = 28) -> np.ndarray:
    return np.zeros((n, side, side), dtype=np.uint8)


BAD_FILES = [
    (TRAIN_IMAGES, idx_bytes(np.zeros(3, np.uint8)),
     "magic number 0x00000801, expected 0x00000803"),
    (TRAIN_LABELS, idx_bytes(_images(40)), "magic number 0x00000803, expected 0x00000801"),
    (TEST_IMAGES, idx_bytes(_images(20), type_code=0x0D), "magic number 0x00000d03"),
    (TEST_IMAGES, b"\x00\x00", "magic number a file shorter than 4 bytes"),
    (TEST_IMAGES, bytes((0, 0, 8, 3, 0, 0, 0, 20)), "truncated in its header (8 bytes"),
    (TRAIN_IMAGES, idx_bytes(_images(40))[:-1],
     "truncated: 31359 bytes of data, expected 31360 for dimensions 40 x 28 x 28"),
    (TEST_LABELS, idx_bytes(np.zeros(20, np.uint8)) + b"\x00",
     "longer than its header says: 21 bytes of data, expected 20"),
    (TRAIN_IMAGES, idx_bytes(_images(40, side=27)), "40 x 27 x 27 images, expected N x 28 x 28"),
    (TEST_IMAGES, idx_bytes(_images(0)), "0 x 28 x 28 images, expected N x 28 x 28 with N >= 1"),
    (TRAIN_LABELS, idx_bytes(np.zeros(39, np.uint8)), "39 labels for the 40 images of"),
    (TEST_LABELS, idx_bytes(np.array([0] * 7 + [10] + [0] * 12, np.uint8)),
     "labels must lie in [0, 10), but label 7 is 10"),
]


@pytest.mark.parametrize(("stem", "content", "fragment"), BAD_FILES)
@pytest.mark.parametrize("gz", [True, False])
def test_each_bad_file_is_named(tmp_path: Path, stem: str, content: bytes, fragment: str,
                                gz: bool) -> None:
    write_fashion_mnist(tmp_path, gz=gz)
    name = f"{stem}.gz" if gz else stem
    (tmp_path / name).write_bytes(gzip.compress(content) if gz else content)
    with pytest.raises(DataError) as info:
        load_dataset(f"fashion-mnist:{tmp_path}")
    message = str(info.value)
    assert message.startswith(str(tmp_path / name)) and fragment in message, message
    assert "\n" not in message


@pytest.mark.parametrize(("content", "fragment"), [
    (gzip.compress(idx_bytes(_images(40)))[:-20], "not a complete gzip file"),
    (idx_bytes(_images(40)), "cannot be read (Not a gzipped file"),
])
def test_broken_gzip_is_named(tmp_path: Path, content: bytes, fragment: str) -> None:
    write_fashion_mnist(tmp_path)
    path = tmp_path / f"{TRAIN_IMAGES}.gz"
    path.write_bytes(content)
    with pytest.raises(DataError, match=f"^{path}: {fragment}".replace("(", r"\(")):
        read_idx(path, 3)
