"""``convdrop masks``: what each method drops, drawn from the real ops on one image.

Dropout removes scattered single units, which a conv layer's correlated neighbours
largely fill back in; DropBlock (arXiv 1810.12890) removes contiguous squares;
spatial dropout removes whole channels; Cutout removes one patch of the input.
This module draws every mask from the library's own ops with a seeded
``torch.Generator`` (same seed, same picture) and plots them side by side.

Conventions (the panel titles repeat the essentials):

* The default image is the "9" at index ``DIGIT_INDEX`` of scikit-learn's bundled
  digits (8x8, values 0..16 scaled to [0, 1]), upsampled bilinearly to 64x64 so a
  block of 7 covers about one stroke width. ``--image`` reads a PNG or JPEG with
  Pillow, as grayscale or RGB, shrunk so its longer side is at most 128 px.
* Images under an op are shown unscaled (``image * keep``), without the
  ``1 / (1 - p)`` factor, so brightness stays comparable across panels.
* Spatial dropout drops whole channels, so on a 1- or 3-channel image it is all or
  nothing; it is shown on a stack of ``STACK_CHANNELS`` copies of the image.
* Both DropBlock panels use the image as 3 channels (a grayscale image is
  replicated): per-channel masks leave colour where only some channels drop,
  shared masks drop all three together (black squares).
* Cutout at "the same p": a square patch of side ``round(sqrt(p * H * W))``, so its
  area is about p of the image before clipping at the border (clipping can only
  make the real fraction smaller).
"""

from __future__ import annotations

import math
from functools import partial
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from convdrop import _io
from convdrop._image_io import decode_image
from convdrop.ops import validate as v
from convdrop.ops.functional import block_mask, cutout_mask, dropout, spatial_dropout
from convdrop.placement.schedules import linear

__all__ = [
    "DIGIT_INDEX", "DIGIT_SIZE", "MAX_IMAGE_SIZE", "STACK_CHANNELS", "cutout_side",
    "default_image", "draw_masks", "load_image", "mask_panels", "read_image",
    "realized_fractions", "save_figure", "schedule_curve",
]

DIGIT_INDEX = 39  # a "9" with a closed loop in sklearn.datasets.load_digits()
DIGIT_SIZE = 64  # the 8x8 digit is upsampled bilinearly to this side
MAX_IMAGE_SIZE = 128  # --image is shrunk (never enlarged) to this longer side
STACK_CHANNELS = 16  # channels of the stack spatial dropout is shown on


def default_image(size: int = DIGIT_SIZE) -> torch.Tensor:
    """The bundled "9" as Tensor[1, size, size], float32 in [0, 1] (ink is bright)."""
    from sklearn.datasets import load_digits

    digit = torch.from_numpy(load_digits().images[DIGIT_INDEX]).float() / 16.0  # (8, 8)
    up = F.interpolate(digit[None, None], size=(size, size), mode="bilinear", align_corners=False)
    return up[0].clamp(0.0, 1.0)


def load_image(path: str | Path, max_size: int = MAX_IMAGE_SIZE) -> torch.Tensor:
    """A PNG or JPEG as Tensor[C, H, W] float32 in [0, 1], C = 1 (grayscale) or 3 (RGB).

    Raises ``FileNotFoundError`` or ``ValueError``, both naming ``path``; see
    ``_image_io.decode_image`` for the checks.
    """
    pixels = decode_image(path, partial(_gray_or_rgb, max_size=max_size))  # (H, W, C)
    return torch.from_numpy(pixels).permute(2, 0, 1).float() / 255.0


def _gray_or_rgb(img: Any, max_size: int) -> Any:
    """A PIL image as L or RGB, shrunk (never enlarged) to fit ``max_size`` square."""
    from PIL import Image

    img = img.convert("L" if img.mode in ("1", "L", "LA", "I", "I;16", "F") else "RGB")
    img.thumbnail((max_size, max_size), Image.Resampling.BILINEAR)
    return img


def read_image(path: str | Path | None) -> torch.Tensor:
    """``load_image(path)``, or ``default_image()`` when ``path`` is None."""
    return default_image() if path is None else load_image(path)


def cutout_side(height: int, width: int, p: float) -> int:
    """Side of the square Cutout patch whose area is about ``p * height * width``."""
    return max(0, round(math.sqrt(v.check_p(p) * height * width)))


def schedule_curve(p: float, steps: int) -> torch.Tensor:
    """Tensor[steps + 1]: the drop rate ``p * schedules.linear(step, steps)`` at each step."""
    rates = [p * linear(t, steps) for t in range(steps + 1)]
    return torch.tensor(rates, dtype=torch.float64)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def mask_panels(
    image: torch.Tensor, p: float, block_size: int, seed: int, *, steps: int = 1000
) -> dict[str, torch.Tensor]:
    """Every method's mask and masked image at the same ``p``, reproducible from ``seed``.

    Args:
        image (Tensor[C, H, W]): C = 1 or 3, values in [0, 1].

    Returns:
        ``"image"`` (C, H, W); for each of ``"dropout"`` (C, H, W), ``"spatial_dropout"``
        (STACK_CHANNELS, H, W), ``"drop_block"`` and ``"drop_block_shared"`` (3, H, W),
        ``"cutout"`` (C, H, W): the masked image under that key and the bool mask (True =
        dropped) under ``key + "_mask"``; ``"schedule"`` (steps + 1,) the drop-rate ramp.
        Each method draws from its own generator seeded with ``seed``.
    """
    v.check_float_tensor(image, "image")
    if image.dim() != 3 or image.shape[0] not in (1, 3):
        raise ValueError(f"image must be (C, H, W) with C = 1 or 3, got {tuple(image.shape)}")
    p, block = v.check_p(p), v.check_positive_int(block_size, "block_size")
    steps = v.check_positive_int(steps, "steps")
    _, height, width = image.shape
    rgb = image.expand(3, height, width)
    stack = image.mean(dim=0, keepdim=True).expand(STACK_CHANNELS, height, width)
    with torch.no_grad():
        masks = {
            "dropout": dropout(torch.ones_like(image), p, generator=_gen(seed)) == 0,
            "spatial_dropout": spatial_dropout(
                torch.ones_like(stack)[None], p, generator=_gen(seed))[0] == 0,
            "drop_block": block_mask((1, *rgb.shape), p, block, generator=_gen(seed))[0],
            "drop_block_shared": block_mask(
                (1, *rgb.shape), p, block, shared_channels=True, generator=_gen(seed))[0],
            "cutout": _cutout(image, p, seed),
        }
    sources = {"spatial_dropout": stack, "drop_block": rgb, "drop_block_shared": rgb}
    panels = {"image": image.clone()}
    for name, mask in masks.items():
        panels[name] = sources.get(name, image).masked_fill(mask, 0.0)
        panels[name + "_mask"] = mask.contiguous()
    panels["schedule"] = schedule_curve(p, steps)
    return panels


def _cutout(image: torch.Tensor, p: float, seed: int) -> torch.Tensor:
    """Bool (C, H, W): one Cutout patch with area about p of the image."""
    side = cutout_side(image.shape[1], image.shape[2], p)
    if side == 0:
        return torch.zeros(image.shape, dtype=torch.bool)
    mask = cutout_mask((1, *image.shape), side, generator=_gen(seed))[0]  # (1, H, W)
    return mask.expand(image.shape)


def save_figure(fig: Any, out: str | Path, dpi: int = 100) -> Path:
    """Write a matplotlib ``Figure`` to ``out`` as PNG atomically (temp file + ``os.replace``)."""
    return _io.write_png(Path(out), fig, dpi)


def draw_masks(panels: dict[str, torch.Tensor], out: str | Path, *, p: float, block_size: int,
               seed: int, dpi: int = 100) -> Path:
    """Draw ``mask_panels`` output as one PNG: images under each op on top, masks below."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(16.5, 6.4), layout="constrained")
    axes = fig.subplots(2, 6)
    _show(axes[0, 0], panels["image"], f"input {_hw(panels['image'])}")
    for col, name in enumerate(_METHODS, start=1):
        mask = panels[name + "_mask"]
        _show(axes[0, col], panels[name], _title(name, mask, block_size, p))
        _show(axes[1, col], _overlay(panels[name], mask, panels["image"]), "mask of " +
              _TITLES[name].split(" (")[0])
    _draw_schedule(axes[1, 0], panels["schedule"], p)
    fig.suptitle(f"What each method drops at p = {p:g} (block {block_size}, seed {seed}): each "
                 "panel is one random draw, whose dropped fraction varies around p; images "
                 "shown without the 1/(1-p) rescaling")
    fig.text(0.5, 0.005, "masks: white = dropped in every channel, red / green / blue = dropped "
             "in that channel only (the image is shown dimmed underneath)", ha="center",
             fontsize=9)
    fig.get_layout_engine().set(h_pad=0.12)
    return save_figure(fig, out, dpi)


_METHODS = ("dropout", "spatial_dropout", "drop_block", "drop_block_shared", "cutout")
_TITLES = {
    "dropout": "dropout",
    "spatial_dropout": f"spatial dropout ({STACK_CHANNELS} copies)",
    "drop_block": "DropBlock per channel (3 channels)",
    "drop_block_shared": "DropBlock shared (3 channels)",
    "cutout": "Cutout (one patch)",
}


def _hw(image: torch.Tensor) -> str:
    return f"{image.shape[-2]}x{image.shape[-1]}"


def realized_fractions(panels: dict[str, torch.Tensor]) -> dict[str, float]:
    """The fraction of units each method's mask dropped in this one draw (its mean is p;
    a single draw of a few large blocks or channels can land far from it)."""
    return {name: float(panels[name + "_mask"].float().mean()) for name in _METHODS}


def _title(name: str, mask: torch.Tensor, block_size: int, p: float) -> str:
    realized = f"one draw: {100 * mask.float().mean():.1f} % dropped, p = {p:g}"
    if name == "spatial_dropout":
        dropped = int(mask.flatten(1).all(dim=1).sum())
        return f"{_TITLES[name]}\n{dropped} of {mask.shape[0]} channels\n{realized}"
    detail = f"block {block_size}" if name.startswith("drop_block") else "single units"
    if name == "cutout":
        side = cutout_side(mask.shape[1], mask.shape[2], p)
        detail = f"{side}x{side} patch"
    return f"{_TITLES[name]}\n{detail}\n{realized}"


def _tile(stack: torch.Tensor, gap: int = 2) -> torch.Tensor:
    """(K, H, W) -> (1, rows*(H+gap)-gap, cols*(W+gap)-gap), K channels on a near-square grid."""
    k, h, w = stack.shape
    cols = math.ceil(math.sqrt(k))
    rows = math.ceil(k / cols)
    grid = torch.full((rows * (h + gap) - gap, cols * (w + gap) - gap), 0.5)
    for i in range(k):
        r, c = divmod(i, cols)
        grid[r * (h + gap): r * (h + gap) + h, c * (w + gap): c * (w + gap) + w] = stack[i]
    return grid[None]


def _overlay(masked: torch.Tensor, mask: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """Float (3, H, W) picture of a bool mask over the dimmed image, or a tiled stack."""
    if masked.shape[0] == STACK_CHANNELS:
        base = 0.3 * image.mean(dim=0).expand_as(mask)
        return _tile(torch.where(mask, torch.ones_like(base), base))
    base = 0.3 * image.mean(dim=0, keepdim=True).expand(3, *mask.shape[1:])
    return torch.where(mask.expand(3, *mask.shape[1:]), torch.ones_like(base), base)


def _show(ax: Any, picture: torch.Tensor, title: str) -> None:
    if picture.shape[0] == STACK_CHANNELS:
        picture = _tile(picture)
    if picture.shape[0] == 1:
        ax.imshow(picture[0].numpy(), cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    else:
        ax.imshow(picture.permute(1, 2, 0).clamp(0, 1).numpy(), interpolation="nearest")
    ax.set_title(title, fontsize=9)
    ax.set_axis_off()


def _draw_schedule(ax: Any, curve: torch.Tensor, p: float) -> None:
    steps = curve.numel() - 1
    ax.plot(range(steps + 1), curve.numpy(), color="tab:blue")
    ax.set_xlim(0, steps * 1.25)
    ax.set_ylim(0, max(p, 1e-3) * 1.15)
    ax.axhline(p, color="gray", linestyle=":", linewidth=1)
    ax.text(steps * 1.22, p * 1.03, f"target p = {p:g}", fontsize=7, color="gray",
            ha="right", va="bottom")
    ax.set_title(f"drop-rate schedule: linear ramp\np(t) = {p:g} * min(1, t / {steps})", fontsize=9)
    ax.set_xlabel("training step t", fontsize=8)
    ax.set_ylabel("drop rate", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.set_box_aspect(1)
