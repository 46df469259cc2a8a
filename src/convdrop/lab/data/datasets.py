"""The splits of one dataset, as every reader returns them."""

from __future__ import annotations

from dataclasses import dataclass

from torch.utils.data import Dataset

__all__ = ["Datasets"]


@dataclass(frozen=True)
class Datasets:
    """The three splits of one dataset: ``TensorDataset(images, labels)`` in memory, or
    :class:`StreamingImages` when ``streaming``; each item is (image, label).

    In memory, images are Tensor[N, C, H, W] float32 in [0, 1] (standardized after
    :func:`normalize`); labels are Tensor[N] int64. Streamed images come out of their
    transform as float32 Tensor[C, S, S], already normalized and (train) augmented.
    """

    train: Dataset  # possibly a stratified train_size subset
    val: Dataset  # for model selection and early stopping
    test: Dataset  # report only; the same object as val when test_is_val
    num_classes: int
    in_channels: int  # C
    image_size: int  # H == W
    name: str  # "digits", "cifar10", "cifar100", "fashion-mnist", "synthetic" or "folder:<dir>"
    classes: tuple[str, ...] = ()  # class names, index = label
    mean: tuple[float, ...] = ()  # per-channel mean of the train split (after train_size)
    std: tuple[float, ...] = ()  # per-channel std of the train split
    test_is_val: bool = False  # True when a folder has no test/ and val stands in
    streaming: bool = False  # decoded per sample from files (a folder), not held in memory
    train_eval: Dataset | None = None  # train images without augmentation (streamed only)
    listing: str | None = None  # a folder's FolderIndex.listing (its files); None without files

    @property
    def train_scored(self) -> Dataset:
        """The training images as evaluation sees them (no augmentation)."""
        return self.train if self.train_eval is None else self.train_eval
