"""Batched, seeded data augmentation on tensors: random crop or random resized crop,
horizontal flip, Cutout. (Streamed datasets augment per image in their DataLoader
workers instead, see :mod:`convdrop.lab.data.transforms`; only Cutout runs here then.)"""

from __future__ import annotations

import math
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
    resized_crop: bool = False  # a random 8-100 % area, aspect 3/4-4/3, resized to H x W

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
        if self.resized_crop:
            images = _resized_crop(images, generator, draw_on)
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


def _resized_crop(images: torch.Tensor, generator: torch.Generator | None,
                  draw_on: torch.device) -> torch.Tensor:
    """Per sample, a box of area fraction U(0.08, 1) and aspect ratio log-U(3/4, 4/3)
    (sides clipped to the image) at a uniform position, resampled bilinearly to H x W."""
    n = images.shape[0]
    u = torch.rand(4, n, generator=generator, device=draw_on, dtype=torch.float64)
    area = 0.08 + 0.92 * u[0]
    ratio = torch.exp(math.log(3 / 4) + (math.log(4 / 3) - math.log(3 / 4)) * u[1])
    width = torch.sqrt(area * ratio).clamp(max=1.0)  # fractions of the image side
    height = torch.sqrt(area / ratio).clamp(max=1.0)
    centre_x = (2 * u[2] - 1) * (1 - width)  # in [-1, 1] coordinates, box inside
    centre_y = (2 * u[3] - 1) * (1 - height)
    theta = torch.zeros(n, 2, 3, dtype=torch.float64, device=draw_on)
    theta[:, 0, 0], theta[:, 0, 2] = width, centre_x
    theta[:, 1, 1], theta[:, 1, 2] = height, centre_y
    theta = theta.to(images.device, images.dtype)
    grid = nn.functional.affine_grid(theta, list(images.shape), align_corners=False)
    return nn.functional.grid_sample(images, grid, mode="bilinear", padding_mode="border",
                                     align_corners=False)
