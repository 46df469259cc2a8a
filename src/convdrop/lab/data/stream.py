"""Image folders streamed from disk: one file decoded per sample, in DataLoader workers.

:class:`StreamingImages` holds a :class:`convdrop.lab.data.index.SplitIndex` (paths and
labels) and a per-image transform; ``dataset[i]`` reads, decodes and transforms image
``i`` and returns ``(float32 Tensor[C, S, S], int64 label)``. Nothing else is kept, so
memory does not grow with the number of images beyond the index.

Decoding is Pillow's (its wheels decode JPEG with libjpeg-turbo), through
``convdrop._image_io`` with its checks for empty, truncated and bomb files: torchvision
0.29 deprecated its own decoders in favour of TorchCodec. A file that cannot be decoded
is a :class:`convdrop.errors.DataError` naming it; a DataLoader worker re-raises it in
the main process.

:func:`channel_stats` measures the per-channel mean and std of a split through the
evaluation transform on a seeded sample, for normalization.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from convdrop import _io
from convdrop._image_io import decode_image
from convdrop.errors import DataError
from convdrop.lab.data.index import SplitIndex
from convdrop.lab.data.transforms import Transform

__all__ = ["StreamingImages", "channel_stats", "read_rgb", "worker_message"]

STATS_SAMPLE = 1000  # images measured for the normalization statistics


def read_rgb(path: str) -> torch.Tensor:
    """The image at ``path`` as uint8 Tensor[3, H, W]; ``DataError`` naming the file."""
    try:
        pixels = decode_image(path, lambda img: img.convert("RGB"))  # (H, W, 3)
    except (OSError, ValueError) as err:
        raise DataError(str(err)) from None
    return torch.from_numpy(pixels).permute(2, 0, 1).contiguous()


def worker_message(text: str) -> str:
    """The error line inside what DataLoader re-raises from a worker ("Caught DataError in
    DataLoader worker process 0." and the worker's traceback): its last line, unprefixed."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if not lines:
        return text
    last = lines[-1]
    for prefix in ("convdrop.errors.DataError: ", "DataError: "):
        last = last.removeprefix(prefix)
    return last


class StreamingImages(Dataset):
    """One split of an image folder, decoded lazily; see the module docstring."""

    def __init__(self, index: SplitIndex, transform: Transform) -> None:
        self.index = index
        self.transform = transform

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = read_rgb(self.index.path(i))
        label = torch.tensor(int(self.index.labels[i]), dtype=torch.int64)
        return self.transform(image), label

    @property
    def labels(self) -> np.ndarray:
        return self.index.labels


_MEASURED: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {}  # by _stats_key


def _stats_key(index: SplitIndex, size: int) -> str:
    return hashlib.sha256(index.folder + b"\0" + index.files.tobytes()
                          + f"\0{size}".encode()).hexdigest()[:16]


def channel_stats(index: SplitIndex, transform: Transform, size: int, *,
                  cache_dir: Path | None = None,
                  sample: int = STATS_SAMPLE) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel (mean, std) of up to ``sample`` images of ``index`` (a seeded choice),
    each through ``transform`` (unnormalized, in [0, 1]); kept for this process and cached
    in ``cache_dir`` per split listing and image size."""
    key = _stats_key(index, size)
    cached = None if cache_dir is None else Path(cache_dir) / f"channel-stats-{key}.json"
    if key in _MEASURED:
        result = _MEASURED[key]
        if cached is not None and not cached.is_file():
            _save_stats(cached, result, min(sample, len(index)))
        return result
    if cached is not None and cached.is_file():
        try:
            saved = json.loads(cached.read_text(encoding="utf-8"))
            return tuple(saved["mean"]), tuple(saved["std"])
        except (OSError, ValueError, KeyError, TypeError):
            pass  # unreadable: measured again and rewritten
    rng = np.random.default_rng(0)
    picked = rng.choice(len(index), size=min(sample, len(index)), replace=False)
    total = torch.zeros(3, dtype=torch.float64)
    squares = torch.zeros(3, dtype=torch.float64)
    count = 0
    for i in np.sort(picked):
        image = transform(read_rgb(index.path(int(i))))
        pixels = image.double().flatten(1)  # (3, S * S)
        total += pixels.sum(dim=1)
        squares += (pixels * pixels).sum(dim=1)
        count += pixels.shape[1]
    mean = total / count
    std = (squares / count - mean * mean).clamp(min=0).sqrt()
    result = tuple(mean.tolist()), tuple(std.tolist())
    _MEASURED[key] = result
    if cached is not None:
        _save_stats(cached, result, len(picked))
    return result


def _save_stats(path: Path, result: tuple[tuple[float, ...], tuple[float, ...]],
                images: int) -> None:
    os.makedirs(path.parent, exist_ok=True)
    _io.write_json(path, {"mean": result[0], "std": result[1], "images": images})
