"""One Pillow image reader for every caller: checked, fully decoded, named on failure.

Pillow opens lazily and is lenient by default: a zero-byte or truncated file can
fail late or half-decode, and an image between one and two times
``Image.MAX_IMAGE_PIXELS`` only warns (``DecompressionBombWarning``). Here every
such case is an ``ImageReadError`` that names the file, raised before any pixel is
used. Pillow is imported on first use, so importing this module stays cheap.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from PIL.Image import Image

__all__ = ["ImageReadError", "check_header", "decode_image"]


class ImageReadError(ValueError):
    """An image file exists but Pillow cannot (or may not) decode it."""


def decode_image(path: str | Path, transform: Callable[[Image], Image]) -> np.ndarray:
    """The image at ``path`` after ``transform``, as uint8 ``(H, W, C)``.

    ``transform`` gets the opened image and returns the one to keep (a mode
    conversion, a resize). Raises ``FileNotFoundError`` when ``path`` is not a file
    and ``ImageReadError`` (a ``ValueError``) for an empty, corrupt or truncated file
    or a decompression bomb; both messages name ``path``.
    """
    with _opened(path) as img:
        img.load()  # decode everything now: truncation fails here, not later
        pixels = np.array(transform(img), dtype=np.uint8)
    return pixels.reshape(*pixels.shape[:2], -1)  # (H, W) grayscale gets its channel axis


def check_header(path: str | Path) -> None:
    """Open the image at ``path`` without decoding its pixels: a missing, empty or
    unrecognized file, or a header of a decompression bomb, raises as
    :func:`decode_image` would (a truncated body is only found by decoding)."""
    with _opened(path) as img:
        if img.width < 1 or img.height < 1:
            raise ValueError(f"size {img.width}x{img.height}")


@contextmanager
def _opened(path: str | Path) -> Iterator[Image]:
    """Pillow's image at ``path`` with every failure inside the block (and a bomb warning)
    an ``ImageReadError`` naming the file; a missing file a ``FileNotFoundError``."""
    from PIL import Image as PILImage

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image not found: {path}")
    if path.stat().st_size == 0:
        raise ImageReadError(f"cannot read image {path} (empty file)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", PILImage.DecompressionBombWarning)
            with PILImage.open(path) as img:
                yield img
    except Exception as err:  # Pillow raises OSError, SyntaxError, ValueError, bomb errors...
        raise ImageReadError(f"cannot read image {path} ({type(err).__name__}: {err})") from None
