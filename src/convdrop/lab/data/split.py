"""Stratified index selection: fixed splits and seeded train subsets."""

from __future__ import annotations

import numpy as np
import torch

from convdrop.errors import ArgumentError


def stratified_indices(labels: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Sorted indices of ``n`` items drawn per class in proportion to its frequency.

    Quotas use the largest-remainder rule, so they sum to ``n`` exactly; when
    ``n >= number of classes`` every class gets at least one item.
    """
    classes, counts = np.unique(labels, return_counts=True)
    exact = counts * (n / len(labels))
    quota = np.floor(exact).astype(np.int64)
    order = np.argsort(-(exact - quota), kind="stable")
    quota[order[: n - int(quota.sum())]] += 1
    if n >= len(classes):
        for empty in np.flatnonzero(quota == 0):  # borrow from the largest quota
            quota[np.argmax(quota)] -= 1
            quota[empty] = 1
    picks = [rng.permutation(np.flatnonzero(labels == c))[:q] for c, q in zip(classes, quota)]
    return np.sort(np.concatenate(picks))


def split_off(labels: torch.Tensor, n: int, rng: np.random.Generator) -> tuple[
        torch.Tensor, torch.Tensor]:
    """``(taken, rest)`` index tensors: a stratified ``n`` and everything else."""
    taken = stratified_indices(labels.numpy(), n, rng)
    rest = np.setdiff1d(np.arange(len(labels)), taken)
    return torch.from_numpy(taken), torch.from_numpy(rest)


def subset_indices(labels: np.ndarray, train_size: int, num_classes: int, seed: int,
                   name: str) -> np.ndarray | None:
    """Sorted indices of a stratified ``train_size`` subset chosen by ``seed``; None when
    ``train_size`` is the whole split."""
    if train_size > len(labels):
        raise ArgumentError(
            f"train_size={train_size} exceeds the {len(labels)} training images of {name}"
        )
    if train_size < num_classes:
        raise ArgumentError(
            f"train_size={train_size} is smaller than the {num_classes} classes of {name}; "
            "a stratified subset needs at least one image per class"
        )
    if train_size == len(labels):
        return None
    return stratified_indices(labels, train_size, np.random.default_rng(seed))


def subset(images: torch.Tensor, labels: torch.Tensor, train_size: int, num_classes: int,
           seed: int, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """A stratified ``train_size`` subset of the train split, chosen by ``seed``."""
    picked = subset_indices(labels.numpy(), train_size, num_classes, seed, name)
    if picked is None:
        return images, labels
    idx = torch.from_numpy(picked)
    return images[idx], labels[idx]
