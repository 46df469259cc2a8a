"""The two datasets that need no files: scikit-learn's digits and a synthetic set."""

from __future__ import annotations

import numpy as np
import torch

SYNTHETIC_CLASSES = ("horizontal_stripes", "vertical_stripes", "blobs")
SYNTHETIC_SIZES = {"train": 600, "val": 150, "test": 150}  # balanced over the 3 classes
SYNTHETIC_SEED = 20181030  # fixed: every run sees the same synthetic images


def read_digits() -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's bundled handwritten digits (no download).

    Returns:
        images (Tensor[1797, 1, 8, 8]) float32 in [0, 1] (raw values are 0..16)
        and labels (Tensor[1797]) int64 in 0..9.
    """
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = torch.from_numpy(bunch.images.astype(np.float32) / 16.0).unsqueeze(1)
    return images, torch.from_numpy(bunch.target.astype(np.int64))


def _stripes(rng: np.random.Generator, n: int, size: int, axis: int) -> np.ndarray:
    """(n, size, size) sinusoidal stripes along ``axis`` with random period and phase."""
    period = rng.uniform(size / 8, size / 4, size=(n, 1, 1))
    phase = rng.uniform(0, 2 * np.pi, size=(n, 1, 1))
    coord = np.arange(size, dtype=np.float64).reshape((1, size, 1) if axis == 0 else (1, 1, size))
    return 0.5 + 0.4 * np.sin(2 * np.pi * coord / period + phase) * np.ones((1, size, size))


def _blobs(rng: np.random.Generator, n: int, size: int) -> np.ndarray:
    """(n, size, size) two Gaussian blobs at random places on a dark background."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    out = np.full((n, size, size), 0.15)
    for _ in range(2):
        cy, cx = (rng.uniform(0.2, 0.8, size=(2, n, 1, 1)) * size)
        sigma = rng.uniform(size / 12, size / 6, size=(n, 1, 1))
        out += 0.8 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma**2))
    return out


def make_synthetic(split: str, image_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded three-class set a small CNN learns in an epoch or two.

    Class 0 is horizontal stripes, class 1 vertical stripes, class 2 blobs; each
    image gets a random per-channel gain and Gaussian noise (std 0.1), then is
    clipped to [0, 1]. Each split draws from its own fixed seed, so the splits are
    disjoint samples and identical on every call.

    Returns:
        images (Tensor[N, 3, S, S]) float32 in [0, 1] and labels (Tensor[N]) int64,
        with N from ``SYNTHETIC_SIZES[split]`` and S = ``image_size``.
    """
    n = SYNTHETIC_SIZES[split]
    rng = np.random.default_rng([SYNTHETIC_SEED, list(SYNTHETIC_SIZES).index(split)])
    labels = np.arange(n) % len(SYNTHETIC_CLASSES)
    planes = np.empty((n, image_size, image_size))
    for label, make in enumerate((
        lambda k: _stripes(rng, k, image_size, axis=0),
        lambda k: _stripes(rng, k, image_size, axis=1),
        lambda k: _blobs(rng, k, image_size),
    )):
        planes[labels == label] = make(int((labels == label).sum()))
    gain = rng.uniform(0.6, 1.0, size=(n, 3, 1, 1))
    images = planes[:, None] * gain + rng.normal(0.0, 0.1, size=(n, 3, image_size, image_size))
    images = np.clip(images, 0.0, 1.0).astype(np.float32)
    return torch.from_numpy(images), torch.from_numpy(labels.astype(np.int64))
