"""Seed rates for DropBlock: the paper's formula and the exact calibration.

A seed may only fall where a whole block fits (the *valid region*). A unit at
position ``u`` is covered by ``m(u)`` valid seed positions, so it survives with
probability ``(1 - gamma) ** m(u)``. The expected dropped fraction of a map is
therefore ``1 - mean_u (1 - gamma) ** m(u)``; :func:`calibrated_gamma` solves that
for ``gamma`` so the fraction equals ``p`` exactly, borders and overlaps counted.

Reference: Ghiasi, Lin, Le, "DropBlock", NeurIPS 2018 (arXiv 1810.12890), eq. (1).
"""

from __future__ import annotations

import functools
import math

import numpy as np


def clip_block(spatial: tuple[int, ...], block: tuple[int, ...]) -> tuple[int, ...]:
    """Clip each block side to the map side: a block never exceeds the map."""
    return tuple(min(k, s) for k, s in zip(block, spatial))


def paper_gamma(spatial: tuple[int, ...], block: tuple[int, ...], p: float) -> float:
    """The paper's rate ``p / k^2 * feat^2 / (feat - k + 1)^2``, per dimension, capped at 1.

    ``block`` must already be clipped to ``spatial``.
    """
    volume = math.prod(spatial)
    valid = math.prod(s - k + 1 for s, k in zip(spatial, block))
    return min(1.0, p / math.prod(block) * volume / valid)


@functools.lru_cache(maxsize=1024)
def coverage_histogram(
    spatial: tuple[int, ...], block: tuple[int, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """Distinct coverage counts ``m`` and how many units have each.

    Returns (values, counts), both 1d int64 numpy arrays; ``counts.sum() == prod(spatial)``.
    """
    per_dim = []
    for s, k in zip(spatial, block):
        u = np.arange(s)
        per_dim.append(np.minimum(u, s - k) - np.maximum(0, u - k + 1) + 1)
    grid = per_dim[0]
    for cover in per_dim[1:]:
        grid = np.multiply.outer(grid, cover)
    values, counts = np.unique(grid.reshape(-1), return_counts=True)
    return values.astype(np.int64), counts.astype(np.int64)


def expected_drop_fraction(spatial: tuple[int, ...], block: tuple[int, ...], gamma: float) -> float:
    """Expected fraction of units dropped in one map for seed rate ``gamma``."""
    values, counts = coverage_histogram(spatial, block)
    kept = np.exp(values * math.log1p(-gamma)) if gamma < 1 else np.zeros(len(values))
    return float(1.0 - (counts * kept).sum() / counts.sum())


@functools.lru_cache(maxsize=4096)
def calibrated_gamma(spatial: tuple[int, ...], block: tuple[int, ...], p: float) -> float:
    """Seed rate whose expected dropped fraction is exactly ``p`` (bisection to 1e-15).

    ``block`` must already be clipped to ``spatial``. Every unit is covered by at
    least one valid seed position, so the fraction reaches 1 at ``gamma = 1``.
    """
    if p <= 0.0:
        return 0.0
    if p >= 1.0:
        return 1.0
    lo, hi = 0.0, 1.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if expected_drop_fraction(spatial, block, mid) < p:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-15:
            break
    return 0.5 * (lo + hi)


def seed_rate(
    spatial: tuple[int, ...], block: tuple[int, ...], p: float, calibrated: bool
) -> float:
    """The seed rate ``drop_block`` uses: calibrated or the paper's."""
    if calibrated:
        return calibrated_gamma(spatial, block, p)
    return paper_gamma(spatial, block, p)


def drop_seed_rate(
    spatial: tuple[int, ...], block: tuple[int, ...], p: float, calibrated: bool
) -> float:
    """The seed rate ``drop_block`` draws with: :func:`seed_rate`, but 0 at ``p >= 1``
    (everything is dropped then, so no seed need be drawn)."""
    return 0.0 if p >= 1.0 else seed_rate(spatial, block, p, calibrated)
