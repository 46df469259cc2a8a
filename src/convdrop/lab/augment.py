"""Batched, seeded data augmentation on tensors: random crop, horizontal flip, Cutout."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from convdrop.ops import validate as v
from convdrop.ops.functional import cutout_mask

__all__ = ["Augment"]


@dataclass(frozen=True)
class Augment:
    """Batched augmentation of Tensor[N, C, H, W] on any device, driven by a generator.

    Random draws happen on the generator's device (the images' without one) and are
    moved to the images, so a CPU generator gives the same crops on every device.
    Flipping suits natural images, not digits. ``Augment(0, False, 0)`` is identity.
    """

    crop_pad: int = 4  # zero padding per side before a random crop back to H x W; 0 = off
    flip: bool = True  # horizontal flip with probability 1/2
    cutout: int = 0  # Cutout (DeVries & Taylor 2017) patch side in pixels; 0 = off

    def __post_init__(self) -> None:
        for name in ("crop_pad", "cutout"):
            v.check_nonnegative_int(getattr(self, name), f"Augment.{name}")

    def __call__(
        self, images: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Return augmented Tensor[N, C, H, W]; the input is not modified."""
        v.check_float_tensor(images, "images")
        v.check_rank(tuple(images.shape), (4,), name="images")
        draw_on = generator.device if generator is not None else images.device
        n = images.shape[0]
        if self.crop_pad > 0:
            offsets = torch.randint(0, 2 * self.crop_pad + 1, (2, n), generator=generator,
                                    device=draw_on)
            images = _crop(images, self.crop_pad, offsets.to(images.device))
        if self.flip:
            flip = torch.rand(n, generator=generator, device=draw_on) < 0.5
            images = torch.where(flip.to(images.device)[:, None, None, None],
                                 images.flip(-1), images)
        if self.cutout > 0:
            mask = cutout_mask(images.shape, self.cutout, generator=generator, device=draw_on)
            images = images.masked_fill(mask.to(images.device), 0)
        return images


def _crop(images: torch.Tensor, pad: int, offsets: torch.Tensor) -> torch.Tensor:
    """Zero-pad by ``pad`` and cut an H x W window at per-sample ``offsets`` (2, N): (dy, dx)."""
    n, _, height, width = images.shape
    padded = nn.functional.pad(images, (pad, pad, pad, pad)).permute(0, 2, 3, 1)  # (N, H', W', C)
    rows = offsets[0, :, None] + torch.arange(height, device=images.device)  # (N, H)
    cols = offsets[1, :, None] + torch.arange(width, device=images.device)  # (N, W)
    batch = torch.arange(n, device=images.device)[:, None, None]
    return padded[batch, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)  # (N, C, H, W)
