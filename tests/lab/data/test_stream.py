"""Streamed image folders: lazy decoding, named errors, workers, statistics."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader

from convdrop.errors import DataError
from convdrop.lab.data import stream
from convdrop.lab.data.index import index_folder
from convdrop.lab.data.stream import StreamingImages, channel_stats, read_rgb
from convdrop.lab.data.transforms import eval_transform

from conftest import write_image_folder


@pytest.fixture(autouse=True)
def forget_measurements():
    """Each test measures afresh: no statistics kept from another test's folder."""
    stream._MEASURED.clear()


@pytest.fixture
def folder(tmp_path):
    return write_image_folder(tmp_path / "d", {"a": 4, "b": 3}, size=(20, 14))


@pytest.mark.parametrize("fmt", ["png", "jpg"])
def test_reads_rgb(tmp_path, fmt):
    root = write_image_folder(tmp_path / "d", {"a": 1}, size=(20, 14), fmt=fmt)
    image = read_rgb(str(root / "train" / "a" / f"00000.{fmt}"))
    assert image.shape == (3, 14, 20) and image.dtype == torch.uint8


@pytest.mark.parametrize("content", [b"", b"not an image", b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"])
def test_a_broken_file_is_a_data_error_naming_it(tmp_path, content):
    bad = tmp_path / "bad.png"
    bad.write_bytes(content)
    with pytest.raises(DataError, match=f"cannot read image {bad}") as caught:
        read_rgb(str(bad))
    assert "\n" not in str(caught.value)


def test_dataset_yields_transformed_images_and_labels_through_workers(folder):
    index = index_folder(folder).splits["train"]
    dataset = StreamingImages(index, eval_transform("none", 8, (0, 0, 0), (1, 1, 1)))
    loader = DataLoader(dataset, batch_size=3, num_workers=2, shuffle=False)
    images, labels = zip(*loader)
    assert torch.cat(labels).tolist() == [0, 0, 0, 0, 1, 1, 1]
    assert torch.cat(images).shape == (7, 3, 8, 8)


def test_a_worker_that_meets_a_broken_file_names_it(folder):
    """Broken after listing (the listing itself refuses it, see test_index)."""
    dataset = StreamingImages(index_folder(folder).splits["train"],
                              eval_transform("none", 8, (0, 0, 0), (1, 1, 1)))
    (folder / "train" / "b" / "00002.png").write_bytes(b"junk")
    with pytest.raises(DataError, match="00002.png"):
        list(DataLoader(dataset, batch_size=4, num_workers=1))


def test_channel_stats_match_a_direct_computation_and_are_cached(folder, tmp_path):
    index = index_folder(folder).splits["train"]
    plain = eval_transform("none", 8, (0, 0, 0), (1, 1, 1))
    mean, std = channel_stats(index, plain, 8, cache_dir=tmp_path / "cache")
    every = torch.stack([plain(read_rgb(index.path(i))) for i in range(len(index))]).double()
    want_std, want_mean = torch.std_mean(every, dim=(0, 2, 3), correction=0)
    assert mean == pytest.approx(want_mean.tolist(), abs=1e-9)
    assert std == pytest.approx(want_std.tolist(), abs=1e-9)
    (cached,) = (tmp_path / "cache").iterdir()
    (folder / "train" / "a" / "00000.png").write_bytes(b"junk")  # not read again:
    assert channel_stats(index, plain, 8) == (mean, std)  # kept by this process
    stream._MEASURED.clear()
    assert channel_stats(index, plain, 8, cache_dir=tmp_path / "cache") == (mean, std)  # disk
    stream._MEASURED.clear()
    cached.write_text("{")  # unreadable: measured again (and the junk file is met)
    with pytest.raises(DataError):
        channel_stats(index, plain, 8, cache_dir=tmp_path / "cache")
