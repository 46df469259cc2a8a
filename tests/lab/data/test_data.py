"""Tests for convdrop.lab.data: specs, the four dataset kinds, safe unpickling and errors."""

from __future__ import annotations

import os
import pickle
import struct
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from convdrop.errors import ArgumentError
from convdrop.lab.data import DataError, Datasets, load_dataset, normalize, parse_spec
from convdrop.lab.data.cifar import safe_load

from conftest import write_image_folder

# ---------------------------------------------------------------- parse_spec


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("digits", ("digits", None)),
        (" Synthetic ", ("synthetic", None)),
        ("cifar10:/data/cifar", ("cifar10", Path("/data/cifar"))),
        ("CIFAR100:rel/dir", ("cifar100", Path("rel/dir"))),
        ("folder:/a:b", ("folder", Path("/a:b"))),  # only the first colon splits
    ],
)
def test_parse_spec(spec: str, expected: tuple[str, Path | None]) -> None:
    assert parse_spec(spec) == expected


def test_parse_spec_expands_home() -> None:
    kind, path = parse_spec("folder:~/images")
    assert kind == "folder" and path == Path.home() / "images"


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ("mnist", "unknown dataset kind 'mnist'"),
        ("", "non-empty"),
        ("cifar10", "needs a path"),
        ("folder:  ", "needs a path"),
        ("digits:/tmp", "takes no path"),
    ],
)
def test_parse_spec_errors(spec: str, fragment: str) -> None:
    with pytest.raises(DataError, match=fragment):
        parse_spec(spec)


def test_unknown_kind_lists_the_known_ones() -> None:
    with pytest.raises(DataError) as info:
        load_dataset("imagenet:/x")
    assert isinstance(info.value, ValueError)
    for kind in ("digits", "synthetic", "cifar10:PATH", "cifar100:PATH", "folder:PATH"):
        assert kind in str(info.value)


# ---------------------------------------------------------------- digits


@pytest.fixture(scope="module")
def digits() -> Datasets:
    return load_dataset("digits")


def _class_counts(ds: torch.utils.data.TensorDataset, num_classes: int) -> torch.Tensor:
    return torch.bincount(ds.tensors[1], minlength=num_classes)


def test_digits_shapes_and_metadata(digits: Datasets) -> None:
    assert (digits.name, digits.num_classes, digits.in_channels, digits.image_size) == (
        "digits", 10, 1, 32)
    assert digits.classes == tuple(str(i) for i in range(10))
    sizes = {"train": 1079, "val": 359, "test": 359}  # 60/20/20 of 1,797
    for split, n in sizes.items():
        images, labels = getattr(digits, split).tensors
        assert images.shape == (n, 1, 32, 32) and images.dtype == torch.float32
        assert labels.shape == (n,) and labels.dtype == torch.int64
        assert 0.0 <= images.min() and images.max() <= 1.0
    assert not digits.test_is_val


def test_digits_split_is_stratified(digits: Datasets) -> None:
    splits = {"train": 0.6, "val": 0.2, "test": 0.2}
    counts = {s: _class_counts(getattr(digits, s), 10) for s in splits}
    pooled = sum(counts.values())
    assert int(pooled.sum()) == 1797
    for split, fraction in splits.items():
        # largest-remainder quotas: each class within one image of its exact share
        assert (counts[split] - fraction * pooled).abs().max() <= 1.0, split


def test_digits_upsampling_correlates_neighbours(digits: Datasets) -> None:
    images = digits.train.tensors[0]
    left, right = images[..., :-1].flatten(), images[..., 1:].flatten()
    assert torch.corrcoef(torch.stack([left, right]))[0, 1] > 0.9


def test_digits_is_deterministic(digits: Datasets) -> None:
    again = load_dataset("digits", seed=5)  # seed only picks train_size subsets
    for split in ("train", "val", "test"):
        for a, b in zip(getattr(digits, split).tensors, getattr(again, split).tensors):
            assert torch.equal(a, b)


def test_digits_train_size_subset(digits: Datasets) -> None:
    small = load_dataset("digits", train_size=50, seed=1)
    images, labels = small.train.tensors
    assert images.shape == (50, 1, 32, 32)
    assert torch.equal(_class_counts(small.train, 10), torch.full((10,), 5))
    full = {row.numpy().tobytes() for row in digits.train.tensors[0]}
    assert all(row.numpy().tobytes() in full for row in images)  # drawn from the train split
    assert torch.equal(small.test.tensors[0], digits.test.tensors[0])  # test unchanged
    same = load_dataset("digits", train_size=50, seed=1)
    other = load_dataset("digits", train_size=50, seed=2)
    assert torch.equal(same.train.tensors[0], images)
    assert not torch.equal(other.train.tensors[0], images)
    assert load_dataset("digits", train_size=1079).train.tensors[0].shape[0] == 1079


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"train_size": 9}, "smaller than the 10 classes"),
        ({"train_size": 1080}, "exceeds the 1079 training images"),
        ({"train_size": 0}, "train_size must be an int >= 1"),
        ({"train_size": True}, "train_size must be an int >= 1"),
        ({"train_size": 5.0}, "train_size must be an int >= 1"),
        ({"image_size": 3}, "image_size must be an int >= 4"),
        ({"image_size": "32"}, "image_size must be an int >= 4"),
        ({"seed": -1}, "seed must be an int >= 0"),
    ],
)
def test_argument_errors(kwargs: dict[str, object], fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        load_dataset("digits", **kwargs)  # type: ignore[arg-type]


def test_digits_image_size_and_normalize() -> None:
    data = load_dataset("digits", image_size=16)
    assert data.train.tensors[0].shape[1:] == (1, 16, 16) and data.image_size == 16
    normed = normalize(data).train.tensors[0]
    assert abs(normed.mean().item()) < 1e-4  # float32 rounding
    assert abs(normed.std(correction=0).item() - 1.0) < 1e-4


# ---------------------------------------------------------------- cifar


def _py2_pickle(obj: object) -> bytes:
    """Protocol-2 bytes as Python 2's cPickle wrote the official CIFAR batches.

    Byte strings are py2 ``str`` (SHORT_BINSTRING/BINSTRING) and arrays go through
    ``numpy.core.multiarray._reconstruct``, exactly the globals the real files name.
    """
    out = bytearray(b"\x80\x02")

    def emit(o: object) -> None:
        if isinstance(o, dict):
            out.extend(b"}(")
            for key, value in o.items():
                emit(key)
                emit(value)
            out.extend(b"u")
        elif isinstance(o, bytes):
            head = b"U" + bytes([len(o)]) if len(o) < 256 else b"T" + struct.pack("<i", len(o))
            out.extend(head + o)
        elif isinstance(o, int):
            out.extend(b"J" + struct.pack("<i", o))
        elif isinstance(o, list):
            out.extend(b"](")
            for value in o:
                emit(value)
            out.extend(b"e")
        elif isinstance(o, np.ndarray) and o.dtype == np.uint8:
            out.extend(b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85U\x01b\x87R")
            out.extend(b"(K\x01(")
            for dim in o.shape:
                emit(dim)
            out.extend(b"tcnumpy\ndtype\nU\x02u1K\x00K\x01\x87R"
                       b"(K\x03U\x01|NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb\x89")
            emit(o.tobytes())
            out.extend(b"tb")
        else:
            raise TypeError(type(o))

    emit(obj)
    return bytes(out + b".")


WRITERS = {"py2": _py2_pickle, "py3": pickle.dumps}


def _write_cifar(root: Path, kind: str, writer: str = "py2", per_batch: int = 4,
                 n_test: int = 6) -> tuple[Path, dict[str, np.ndarray]]:
    """A tiny CIFAR directory under ``root``; returns it and the raw rows and labels."""
    rng = np.random.default_rng(0)
    dump = WRITERS[writer]
    if kind == "cifar10":
        folder, label_key, classes = root / "cifar-10-batches-py", b"labels", 10
        files = [f"data_batch_{i}" for i in range(1, 6)]
        meta = ("batches.meta", {b"label_names": [f"c{i}".encode() for i in range(10)]})
    else:
        folder, label_key, classes = root / "cifar-100-python", b"fine_labels", 100
        files = ["train"]
        meta = ("meta", {b"fine_label_names": [f"f{i}".encode() for i in range(100)]})
        per_batch = 20
    folder.mkdir(parents=True)
    raw: dict[str, list[np.ndarray]] = {"train_x": [], "train_y": [], "test_x": [], "test_y": []}
    for name, n, split in [(f, per_batch, "train") for f in files] + [
            ("test_batch" if kind == "cifar10" else "test", n_test, "test")]:
        data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, classes, size=n)]
        batch = {b"batch_label": name.encode(), b"data": data, label_key: labels}
        (folder / name).write_bytes(dump(batch))
        raw[f"{split}_x"].append(data)
        raw[f"{split}_y"].append(np.array(labels))
    (folder / meta[0]).write_bytes(dump(meta[1]))
    return folder, {k: np.concatenate(v) for k, v in raw.items()}


def _as_rows(images: torch.Tensor) -> list[bytes]:
    """Float [0, 1] Tensor[N, 3, 32, 32] back to channel-major uint8 rows of 3072."""
    return [r.tobytes() for r in (images * 255).round().to(torch.uint8).reshape(-1, 3072).numpy()]


@pytest.mark.parametrize("writer", ["py2", "py3"])
@pytest.mark.parametrize("kind", ["cifar10", "cifar100"])
def test_cifar_round_trip(tmp_path: Path, kind: str, writer: str) -> None:
    folder, raw = _write_cifar(tmp_path, kind, writer)
    data = load_dataset(f"{kind}:{tmp_path}")  # the parent of the batch directory
    n_train = len(raw["train_y"])
    n_val = max(1, n_train // 10)
    assert (len(data.train), len(data.val), len(data.test)) == (n_train - n_val, n_val, 6)
    assert data.num_classes == (10 if kind == "cifar10" else 100) and data.in_channels == 3
    assert data.classes[:2] == (("c0", "c1") if kind == "cifar10" else ("f0", "f1"))
    assert _as_rows(data.test.tensors[0]) == [r.tobytes() for r in raw["test_x"]]
    assert data.test.tensors[1].tolist() == raw["test_y"].tolist()
    expected = {r.tobytes(): int(y) for r, y in zip(raw["train_x"], raw["train_y"])}
    seen = {}
    for split in (data.train, data.val):
        seen.update(zip(_as_rows(split.tensors[0]), split.tensors[1].tolist()))
    assert seen == expected  # train and val partition the train batches, labels kept
    direct = load_dataset(f"{kind}:{folder}")  # the batch directory itself
    assert torch.equal(direct.train.tensors[0], data.train.tensors[0])


def test_cifar_rows_are_channel_major(tmp_path: Path) -> None:
    folder, _ = _write_cifar(tmp_path, "cifar10")
    row = np.zeros(3072, dtype=np.uint8)
    row[:1024] = 255  # red plane
    row[2048:] = np.arange(1024) % 256  # blue plane, row-major over (y, x)
    batch = {b"data": np.stack([row] * 4), b"labels": [0, 1, 2, 3]}
    (folder / "test_batch").write_bytes(_py2_pickle(batch))
    image = load_dataset(f"cifar10:{folder}").test.tensors[0][0]  # (3, 32, 32)
    assert torch.all(image[0] == 1.0) and torch.all(image[1] == 0.0)
    y, x = 5, 7
    assert image[2, y, x].item() == pytest.approx(((y * 32 + x) % 256) / 255)


class _RunsShell:
    """Unpickling this would run a shell command."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.system, (f"touch {self.marker}",)


class _CallsNumpyLoad:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return np.load, ("/nonexistent.npy",)


def test_forbidden_global_is_refused_and_nothing_runs(tmp_path: Path) -> None:
    folder, _ = _write_cifar(tmp_path, "cifar10")
    marker = tmp_path / "pwned"
    evil = {b"data": _RunsShell(marker), b"labels": [0]}
    (folder / "data_batch_3").write_bytes(pickle.dumps(evil))
    with pytest.raises(DataError, match=r"data_batch_3: refused to load global (os|posix)\.system"):
        load_dataset(f"cifar10:{folder}")
    assert not marker.exists()


@pytest.mark.parametrize("payload", [_CallsNumpyLoad(), print, Path("x")])
def test_only_numpy_array_globals_are_allowed(tmp_path: Path, payload: object) -> None:
    path = tmp_path / "batch"
    path.write_bytes(pickle.dumps({b"data": payload}))
    with pytest.raises(DataError, match="refused to load global"):
        safe_load(path)


def _corrupt(folder: Path, name: str, content: bytes) -> None:
    (folder / name).write_bytes(content)


@pytest.mark.parametrize(
    ("name", "content", "fragment"),
    [
        ("data_batch_2", b"not a pickle at all", "data_batch_2 is not a readable CIFAR pickle"),
        ("test_batch", pickle.dumps({b"data": np.zeros((2, 3072), np.uint8)})[:40],
         "test_batch is not a readable CIFAR pickle"),
        ("data_batch_1", pickle.dumps([1, 2]), "expected a dict with keys b'data' and b'labels'"),
        ("data_batch_1", pickle.dumps({b"data": np.zeros((2, 3072)), b"labels": [0, 1]}),
         r"uint8 array of shape \(N, 3072\), got float64"),
        ("data_batch_1", pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}),
         "2 images but 1 labels"),
        ("data_batch_1", pickle.dumps({b"data": np.zeros((1, 3072), np.uint8), b"labels": [10]}),
         r"labels must lie in \[0, 10\)"),
        *[pytest.param("data_batch_1", pickle.dumps({b"data": np.zeros((2, 3072), np.uint8),
                                                      b"labels": [0, bad]}), fragment,
                       id=f"label {bad!r}")
          for bad, fragment in [
              (1.7, r"label 1 is 1.7 \(float\)"), (1.0, r"label 1 is 1.0 \(float\)"),
              ("1", r"label 1 is '1' \(str\)"), (True, r"label 1 is True \(bool\)"),
              ([1], r"label 1 is \[1\] \(list\)"),
              (2**70, r"labels must lie in \[0, 10\), but label 1 is 1180591620717411303424"),
          ]],
        pytest.param("data_batch_1", pickle.dumps({b"data": np.zeros((2, 3072), np.uint8),
                                                    b"labels": np.array([0.0, 1.0])}),
                     r"must be a list of ints, got a float64 array", id="float array labels"),
    ],
)
def test_cifar_bad_files(tmp_path: Path, name: str, content: bytes, fragment: str) -> None:
    folder, _ = _write_cifar(tmp_path, "cifar10")
    _corrupt(folder, name, content)
    with pytest.raises(DataError, match=fragment):
        load_dataset(f"cifar10:{folder}")


def test_cifar_layout_errors_name_path_and_layout(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(DataError) as info:
        load_dataset(f"cifar10:{missing}")
    assert str(missing) in str(info.value) and "cifar-10-batches-py" in str(info.value)
    with pytest.raises(DataError, match="no data_batch_1 found.*data_batch_1, .*test_batch"):
        load_dataset(f"cifar10:{tmp_path}")
    with pytest.raises(DataError, match="no train found.*'cifar-100-python'"):
        load_dataset(f"cifar100:{tmp_path}")
    folder, _ = _write_cifar(tmp_path, "cifar10")
    (folder / "test_batch").unlink()
    (folder / "data_batch_4").unlink()
    with pytest.raises(DataError, match=f"{folder}: missing data_batch_4, test_batch"):
        load_dataset(f"cifar10:{tmp_path}")


def test_cifar_train_size(tmp_path: Path) -> None:
    _write_cifar(tmp_path, "cifar100", writer="py3")
    with pytest.raises(ValueError, match="smaller than the 100 classes"):
        load_dataset(f"cifar100:{tmp_path}", train_size=10)


# ---------------------------------------------------------------- folder

COLOURS = {"dog": (200, 30, 10), "ant": (0, 128, 255), "cat": (90, 90, 90)}


def _write_folder(root: Path, splits: tuple[str, ...] = ("train", "val", "test"),
                  per_class: int = 2) -> Path:
    """Solid-colour images per class: PNGs in train, JPEGs and odd sizes elsewhere."""
    for split in splits:
        for name, colour in COLOURS.items():
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(per_class):
                if split == "train":
                    Image.new("RGB", (32, 32), colour).save(folder / f"{i}.png")
                else:
                    Image.new("RGB", (20 + i, 12), colour).save(folder / f"{i}.JPG", quality=95)
            (folder / "notes.txt").write_text("ignored")
    return root


def test_folder_reads_sorted_classes_and_pixels(tmp_path: Path) -> None:
    root = _write_folder(tmp_path / "shapes")
    data = load_dataset(f"folder:{root}", mode="memory", image_size=32)
    assert data.classes == ("ant", "cat", "dog") and data.num_classes == 3
    assert (data.name, data.in_channels, data.image_size) == ("folder:shapes", 3, 32)
    assert [len(s) for s in (data.train, data.val, data.test)] == [6, 6, 6]
    images, labels = data.train.tensors
    assert images.shape == (6, 3, 32, 32) and labels.tolist() == [0, 0, 1, 1, 2, 2]
    for image, label in zip(images, labels):
        colour = torch.tensor(COLOURS[data.classes[label]], dtype=torch.float32) / 255
        assert torch.allclose(image, colour.view(3, 1, 1).expand(3, 32, 32))  # PNG is lossless
    test_images, test_labels = data.test.tensors
    assert test_images.shape == (6, 3, 32, 32) and test_labels.tolist() == [0, 0, 1, 1, 2, 2]
    colour = torch.tensor(COLOURS["dog"], dtype=torch.float32) / 255
    assert (test_images[-1] - colour.view(3, 1, 1)).abs().max() < 0.05  # JPEG is lossy
    assert not data.test_is_val
    streamed = load_dataset(f"folder:{root}", image_size=32)
    assert data.listing is not None and data.listing == streamed.listing  # what runs record
    assert load_dataset("synthetic").listing is None


def test_folder_grayscale_becomes_rgb_and_resizes(tmp_path: Path) -> None:
    root = _write_folder(tmp_path, splits=("train", "val"))
    Image.new("L", (40, 30), 128).save(root / "train" / "cat" / "gray.jpeg")
    with pytest.warns(UserWarning):
        data = load_dataset(f"folder:{root}", image_size=8, mode="memory")
    images, labels = data.train.tensors
    assert images.shape == (7, 3, 8, 8)
    gray = images[labels == 1][-1]
    assert torch.allclose(gray, torch.full_like(gray, 128 / 255), atol=2 / 255)


def test_folder_without_test_uses_val_and_warns(tmp_path: Path) -> None:
    root = _write_folder(tmp_path, splits=("train", "val"))
    with pytest.warns(UserWarning, match="no test/ folder; the val/ images are used as the test"):
        data = load_dataset(f"folder:{root}")
    assert data.test_is_val and data.test is data.val
    normed = normalize(data)
    assert normed.test is normed.val


def test_folder_with_test_does_not_warn(tmp_path: Path) -> None:
    root = _write_folder(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_dataset(f"folder:{root}")


@pytest.mark.parametrize("mode", ["memory", "stream"])
@pytest.mark.parametrize("content", [b"\x89PNG\r\n\x1a\n but then garbage", b""])
def test_folder_corrupt_image(tmp_path: Path, content: bytes, mode: str) -> None:
    """Found before training, streamed or not: the index opens every file's header."""
    root = _write_folder(tmp_path)
    bad = root / "val" / "cat" / "broken.png"
    bad.write_bytes(content)
    with pytest.raises(DataError, match=f"cannot read image {bad}"):
        load_dataset(f"folder:{root}", mode=mode, image_size=8)


@pytest.mark.parametrize(
    ("breakage", "fragment"),
    [
        ("no_root", "no such directory"),
        ("no_train", "no train/ folder"),
        ("no_val", "no val/ folder"),
        ("empty_class", "class folder .*/train/cat holds no .png/.jpg/.jpeg files"),
        ("no_classes", "holds no class folders"),
        ("extra_class", "has classes not in train/: zebra"),
    ],
)
def test_folder_layout_errors(tmp_path: Path, breakage: str, fragment: str) -> None:
    root = tmp_path / "images"
    if breakage != "no_root":
        _write_folder(root)
    if breakage == "no_train":
        (root / "train").rename(root / "training")
    elif breakage == "no_val":
        (root / "val").rename(root / "validation")
    elif breakage == "empty_class":
        for f in (root / "train" / "cat").iterdir():
            f.unlink()
    elif breakage == "no_classes":
        for d in (root / "test").iterdir():
            for f in d.iterdir():
                f.unlink()
            d.rmdir()
    elif breakage == "extra_class":
        (root / "val" / "zebra").mkdir()
        Image.new("RGB", (4, 4)).save(root / "val" / "zebra" / "z.png")
    with pytest.raises(DataError, match=fragment) as info:
        load_dataset(f"folder:{root}")
    message = str(info.value)
    assert str(root) in message and "root/train/<class>/*.png|jpg|jpeg" in message


# ---------------------------------------------------------------- synthetic


def test_synthetic_shapes_balance_and_determinism() -> None:
    data = load_dataset("synthetic")
    assert (data.num_classes, data.in_channels, data.image_size) == (3, 3, 32)
    for split, n in (("train", 600), ("val", 150), ("test", 150)):
        images, labels = getattr(data, split).tensors
        assert images.shape == (n, 3, 32, 32) and images.dtype == torch.float32
        assert torch.equal(torch.bincount(labels), torch.full((3,), n // 3))
        assert 0.0 <= images.min() and images.max() <= 1.0
    again = load_dataset("synthetic")
    assert torch.equal(again.train.tensors[0], data.train.tensors[0])
    assert not torch.equal(data.val.tensors[0], data.test.tensors[0])
    assert load_dataset("synthetic", image_size=16).test.tensors[0].shape == (150, 3, 16, 16)


def test_synthetic_is_learnable_in_one_epoch() -> None:
    data = load_dataset("synthetic", image_size=16)  # 16x16 keeps the test fast
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = torch.nn.Sequential(
            torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
            torch.nn.MaxPool2d(2), torch.nn.Conv2d(8, 16, 3, padding=1), torch.nn.ReLU(),
            torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(16, 3),
        )
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
        loader = torch.utils.data.DataLoader(data.train, batch_size=32, shuffle=True)
        for images, labels in loader:
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(model(images), labels).backward()
            optimizer.step()
    model.eval()
    with torch.no_grad():
        images, labels = data.test.tensors
        accuracy = (model(images).argmax(1) == labels).float().mean().item()
    assert accuracy > 0.9  # chance is 1/3


# ---------------------------------------------------------------- stratified selection


@pytest.mark.parametrize("n", [0, 3, 7, 30, 55])
def test_stratified_indices_exact_size_and_every_class(n: int) -> None:
    from convdrop.lab.data.split import stratified_indices

    labels = np.array([0] * 50 + [1] * 3 + [2] * 2)  # imbalanced on purpose
    picked = stratified_indices(labels, n, np.random.default_rng(0))
    assert len(picked) == n == len(np.unique(picked))
    assert np.all(np.diff(picked) > 0)  # sorted, so datasets keep a canonical order
    if n >= 3:
        assert set(labels[picked]) == {0, 1, 2}  # every class, even the rare ones


# ---------------------------------------------------------------- streamed folders


def test_folder_streams_by_default_normalized_with_cached_statistics(tmp_path: Path) -> None:
    from convdrop.lab.data.stream import StreamingImages

    root = write_image_folder(tmp_path / "d", {"a": 6, "b": 4}, size=(24, 20))
    cache = tmp_path / "out" / "cache"
    data = load_dataset(f"folder:{root}", image_size=16, cache_dir=cache)
    assert data.streaming and isinstance(data.train, StreamingImages)
    assert (data.num_classes, data.in_channels, data.image_size) == (2, 3, 16)
    assert normalize(data) is data
    scored = torch.stack([data.train_scored[i][0] for i in range(len(data.train))])
    assert scored.shape == (10, 3, 16, 16)
    std, mean = torch.std_mean(scored, dim=(0, 2, 3), correction=0)
    assert torch.allclose(mean, torch.zeros(3), atol=1e-4)  # its own statistics
    assert torch.allclose(std, torch.ones(3), atol=1e-4)
    assert sorted(p.name.split("-")[0] for p in cache.iterdir()) == ["channel", "folder"]
    image, label = data.train[0]
    assert image.shape == (3, 16, 16) and label.dtype == torch.int64


def test_streamed_train_size_is_a_stratified_subset(tmp_path: Path) -> None:
    root = write_image_folder(tmp_path / "d", {"a": 6, "b": 4, "c": 2}, size=(8, 8))
    data = load_dataset(f"folder:{root}", image_size=8, train_size=6, seed=1,
                        normalization="imagenet")
    assert sorted(data.train.labels.tolist()) == [0, 0, 0, 1, 1, 2]
    assert data.mean == (0.485, 0.456, 0.406) and len(data.val) == 12
    with pytest.raises(ArgumentError, match="train_size=13 exceeds the 12 training images"):
        load_dataset(f"folder:{root}", image_size=8, train_size=13)


@pytest.mark.parametrize(("kwargs", "fragment"), [
    ({"mode": "disk"}, "data_mode must be one of auto, memory, stream, got 'disk'"),
    ({"augment": "rrc"}, "augment must be one of none, crop, crop\\+flip, random_resized"),
    ({"normalization": "cifar"}, "normalization must be one of train, imagenet, none"),
])
def test_streaming_options_are_checked(kwargs: dict, fragment: str) -> None:
    with pytest.raises(DataError, match=fragment):
        load_dataset("synthetic", **kwargs)


def test_only_folders_stream() -> None:
    with pytest.raises(DataError, match="data_mode 'stream' reads image files, and digits"):
        load_dataset("digits", mode="stream")


def test_a_folder_too_big_for_memory_is_refused_before_decoding(tmp_path: Path,
                                                               monkeypatch) -> None:
    from convdrop.lab.data import streamed

    root = write_image_folder(tmp_path / "d", {"a": 3, "b": 3}, size=(8, 8))
    monkeypatch.setattr(streamed, "available_memory", lambda: 2 * 18 * 3 * 64 * 64 * 4 - 1)
    with pytest.raises(DataError, match=r"in memory needs about 0\.0 GiB \(18 images at 64x64"):
        load_dataset(f"folder:{root}", image_size=64, mode="memory")
    assert load_dataset(f"folder:{root}", image_size=63, mode="memory").image_size == 63
