"""The shared Pillow reader: shapes, and every bad file is an error naming it."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from convdrop._image_io import ImageReadError, decode_image


def _png(path: Path, mode: str = "RGB", size: tuple[int, int] = (12, 8)) -> Path:
    Image.new(mode, size, 200 if mode == "L" else (10, 20, 30)).save(path)
    return path


def _keep(img: Image.Image) -> Image.Image:
    return img


def test_rgb_and_gray_shapes_and_values(tmp_path: Path) -> None:
    rgb = decode_image(_png(tmp_path / "c.png"), _keep)
    gray = decode_image(_png(tmp_path / "g.png", "L"), _keep)
    assert rgb.shape == (8, 12, 3) and rgb.dtype == np.uint8 and rgb[0, 0].tolist() == [10, 20, 30]
    assert gray.shape == (8, 12, 1) and int(gray.max()) == 200
    assert rgb.flags.writeable  # torch.from_numpy needs no copy and gives no warning


def test_transform_is_applied(tmp_path: Path) -> None:
    out = decode_image(_png(tmp_path / "c.png"), lambda img: img.convert("L").resize((4, 5)))
    assert out.shape == (5, 4, 1)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.png"):
        decode_image(tmp_path / "nope.png", _keep)
    with pytest.raises(FileNotFoundError, match="image not found"):
        decode_image(tmp_path, _keep)  # a folder is not an image file


def _truncated(path: Path) -> None:
    buffer = io.BytesIO()
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(buffer, format="PNG")
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])


@pytest.mark.parametrize(("make", "fragment"), [
    (lambda p: p.write_bytes(b""), "empty file"),
    (lambda p: p.write_bytes(b"not an image"), "UnidentifiedImageError"),
    (lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n but then garbage"), "cannot read image"),
    (_truncated, "OSError"),
])
def test_bad_files_name_the_file(tmp_path: Path, make, fragment: str) -> None:
    bad = tmp_path / "bad.png"
    make(bad)
    with pytest.raises(ImageReadError, match=fragment) as info:
        decode_image(bad, _keep)
    assert f"cannot read image {bad}" in str(info.value)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("pixels", [300, 150])  # over twice the limit: error; over it: warning
def test_decompression_bomb_is_an_error(tmp_path: Path, monkeypatch, pixels: int) -> None:
    path = _png(tmp_path / "big.png", size=(pixels, 1))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ImageReadError, match=f"cannot read image {path}.*DecompressionBomb"):
            decode_image(path, _keep)
