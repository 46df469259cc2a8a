"""Helpers shared by the test modules (``from conftest import gen``).

pytest puts this folder on ``sys.path`` because this file is here, so every test
module, in any subfolder, can import these.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

# Keras picks its backend once, when it is first imported: torch here, unless the run
# asks for another (``KERAS_BACKEND=jax pytest tests/keras`` runs the same tests on JAX).
os.environ.setdefault("KERAS_BACKEND", "torch")


def gen(seed: int = 0) -> torch.Generator:
    """A CPU generator seeded with ``seed``: every statistical test draws from one."""
    return torch.Generator().manual_seed(seed)


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def write_image(path: Path, mode: str, size: tuple[int, int]) -> Path:
    """A flat image of ``size`` (width, height) in Pillow ``mode`` ("L" or "RGB") at ``path``."""
    from PIL import Image  # the lab extra: only the picture tests need it

    Image.new(mode, size, 128 if mode == "L" else (200, 50, 25)).save(path)
    return path


def assert_png(path: Path) -> None:
    """``path`` is a PNG figure larger than 100x100 pixels."""
    from PIL import Image

    assert path.read_bytes()[:8] == PNG_SIGNATURE
    with Image.open(path) as img:
        assert img.format == "PNG"
        assert img.width > 100 and img.height > 100


def write_image_folder(root: Path, per_class: dict[str, int], *, size: tuple[int, int] = (12, 10),
                       splits: tuple[str, ...] = ("train", "val", "test"),
                       fmt: str = "png") -> Path:
    """An ImageFolder tree of small noisy RGB images: ``per_class[name]`` files per class
    in every split, each class with its own base colour (so a model can tell them apart),
    ``size`` (width, height). Seeded: the same call writes the same bytes."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in splits:
        for c, (name, count) in enumerate(sorted(per_class.items())):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            base = np.array([(60 * c) % 256, 255 - (40 * c) % 256, (90 * c) % 256])
            for i in range(count):
                noise = rng.integers(-30, 31, (size[1], size[0], 3))
                pixels = np.clip(base + noise, 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{i:05d}.{fmt}")
    return root
