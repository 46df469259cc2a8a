"""Per-image transforms for streamed datasets: train recipes, evaluation, normalization.

Each transform takes one decoded image, uint8 Tensor[C, H, W] of any size, and returns
float32 Tensor[C, S, S], normalized with the dataset's per-channel mean and std:

- ``crop+flip`` (CIFAR-style): resize the shorter side to S, centre crop S x S, pad by
  S // 8 and take a random S x S crop, flip horizontally with probability 1/2.
- ``crop``: the same without the flip. ``none``: resize and centre crop only.
- ``random_resized_crop+flip`` (ImageNet-style): a random crop of 8 %-100 % of the area
  with aspect ratio 3/4-4/3, resized to S x S, then the flip.
- evaluation: resize the shorter side to S (to S / 0.875 after
  ``random_resized_crop+flip``, the usual 224-from-256) and centre crop S x S.

With torchvision installed these are ``torchvision.transforms.v2`` pipelines; without it
a plain-torch version of the same steps runs (same geometry, bilinear antialiased
resizing). Randomness comes from torch's global RNG, which DataLoader seeds per worker
from the loader's generator, so a run is reproducible for a given number of workers.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

__all__ = ["RECIPES", "Transform", "eval_transform", "train_transform"]

RECIPES = ("none", "crop", "crop+flip", "random_resized_crop+flip")
EVAL_CROP_FRACTION = 0.875  # centre crop S from a shorter side of S / 0.875
AREA_RANGE = (0.08, 1.0)  # RandomResizedCrop defaults
RATIO_RANGE = (3 / 4, 4 / 3)

Transform = Callable[[torch.Tensor], torch.Tensor]


def _torchvision_v2():  # noqa: ANN202 - the module, or None
    try:
        from torchvision.transforms import v2
    except ImportError:
        return None
    return v2


def train_transform(recipe: str, size: int, mean: Sequence[float], std: Sequence[float],
                    *, use_torchvision: bool = True) -> Transform:
    """The training transform of ``recipe`` (one of :data:`RECIPES`) at side ``size``."""
    if recipe not in RECIPES:
        raise ValueError(f"augment must be one of {', '.join(RECIPES)}, got {recipe!r}")
    v2 = _torchvision_v2() if use_torchvision else None
    if v2 is not None:
        return _v2_train(v2, recipe, size, mean, std)
    return _TorchTrain(recipe, size, tuple(mean), tuple(std))


def eval_transform(recipe: str, size: int, mean: Sequence[float], std: Sequence[float],
                   *, use_torchvision: bool = True) -> Transform:
    """Resize the shorter side and centre crop ``size`` (see the module docstring)."""
    resize = _eval_resize(recipe, size)
    v2 = _torchvision_v2() if use_torchvision else None
    if v2 is not None:
        return v2.Compose([v2.Resize(resize, antialias=True), v2.CenterCrop(size),
                           *_v2_tail(v2, mean, std)])
    return _TorchEval(resize, size, tuple(mean), tuple(std))


def _eval_resize(recipe: str, size: int) -> int:
    if recipe == "random_resized_crop+flip":
        return round(size / EVAL_CROP_FRACTION)
    return size


def _v2_tail(v2, mean: Sequence[float], std: Sequence[float]) -> list:  # noqa: ANN001
    return [v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(_safe(std)))]


def _v2_train(v2, recipe: str, size: int, mean: Sequence[float],  # noqa: ANN001
              std: Sequence[float]) -> Transform:
    if recipe == "random_resized_crop+flip":
        steps = [v2.RandomResizedCrop(size, scale=AREA_RANGE, ratio=RATIO_RANGE, antialias=True)]
    else:
        steps = [v2.Resize(size, antialias=True), v2.CenterCrop(size)]
        if recipe in ("crop", "crop+flip"):
            steps.append(v2.RandomCrop(size, padding=size // 8))
    if recipe.endswith("+flip"):
        steps.append(v2.RandomHorizontalFlip())
    return v2.Compose([*steps, *_v2_tail(v2, mean, std)])


def _safe(std: Sequence[float]) -> tuple[float, ...]:
    """A zero std (a constant channel) only centres."""
    return tuple(s if s > 0 else 1.0 for s in std)


# --- plain torch, when torchvision is absent ----------------------------------------

def _resize(image: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """float (C, H, W) -> (C, height, width), bilinear, antialiased when shrinking."""
    if image.shape[-2:] == (height, width):
        return image
    shrink = height < image.shape[-2] or width < image.shape[-1]
    return F.interpolate(image[None], size=(height, width), mode="bilinear",
                         align_corners=False, antialias=shrink)[0]


def _shorter_side(image: torch.Tensor, side: int) -> torch.Tensor:
    h, w = image.shape[-2:]
    scale = side / min(h, w)
    return _resize(image, max(side, round(h * scale)), max(side, round(w * scale)))


def _centre(image: torch.Tensor, size: int) -> torch.Tensor:
    h, w = image.shape[-2:]
    top, left = (h - size) // 2, (w - size) // 2
    return image[:, top:top + size, left:left + size]


def _normalized(image: torch.Tensor, mean: tuple[float, ...],
                std: tuple[float, ...]) -> torch.Tensor:
    m = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1)
    s = torch.tensor(_safe(std), dtype=torch.float32).view(-1, 1, 1)
    return ((image - m) / s).contiguous()


class _TorchEval:
    def __init__(self, resize: int, size: int, mean: tuple[float, ...],
                 std: tuple[float, ...]) -> None:
        self.resize, self.size, self.mean, self.std = resize, size, mean, std

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        x = _shorter_side(image.float().div(255), self.resize)
        return _normalized(_centre(x, self.size).clamp(0, 1), self.mean, self.std)


def _random_area(h: int, w: int) -> tuple[int, int, int, int]:
    """(top, left, height, width) of a RandomResizedCrop box; the centre crop after ten
    misses, as torchvision does."""
    area = h * w
    log_ratio = (math.log(RATIO_RANGE[0]), math.log(RATIO_RANGE[1]))
    for _ in range(10):
        target = area * torch.empty(1).uniform_(*AREA_RANGE).item()
        ratio = math.exp(torch.empty(1).uniform_(*log_ratio).item())
        cw, ch = round(math.sqrt(target * ratio)), round(math.sqrt(target / ratio))
        if 0 < cw <= w and 0 < ch <= h:
            top = int(torch.randint(0, h - ch + 1, (1,)))
            left = int(torch.randint(0, w - cw + 1, (1,)))
            return top, left, ch, cw
    side = min(h, w)
    return (h - side) // 2, (w - side) // 2, side, side


class _TorchTrain:
    def __init__(self, recipe: str, size: int, mean: tuple[float, ...],
                 std: tuple[float, ...]) -> None:
        self.recipe, self.size, self.mean, self.std = recipe, size, mean, std

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        x, size = image.float().div(255), self.size
        if self.recipe == "random_resized_crop+flip":
            top, left, ch, cw = _random_area(*x.shape[-2:])
            x = _resize(x[:, top:top + ch, left:left + cw], size, size)
        else:
            x = _centre(_shorter_side(x, size), size)
            if self.recipe in ("crop", "crop+flip"):
                pad = size // 8
                dy, dx = (int(v) for v in torch.randint(0, 2 * pad + 1, (2,)))
                x = F.pad(x, (pad, pad, pad, pad))[:, dy:dy + size, dx:dx + size]
        if self.recipe.endswith("+flip") and torch.rand(()) < 0.5:
            x = x.flip(-1)
        return _normalized(x.clamp(0, 1), self.mean, self.std)
