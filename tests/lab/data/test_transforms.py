"""Per-image transforms: shapes, normalization, the eval geometry, and the same recipes
with and without torchvision."""

from __future__ import annotations

import pytest
import torch

from convdrop.lab.data.transforms import RECIPES, eval_transform, train_transform

MEAN, STD = (0.5, 0.25, 0.0), (0.5, 0.25, 0.0)  # a zero std only centres


def image(h: int = 30, w: int = 50) -> torch.Tensor:
    """uint8 (3, h, w): a horizontal ramp in channel 0, constants elsewhere."""
    ramp = torch.linspace(0, 255, w).round().to(torch.uint8).expand(h, w)
    return torch.stack([ramp, torch.full((h, w), 64, dtype=torch.uint8),
                        torch.full((h, w), 255, dtype=torch.uint8)])


@pytest.mark.parametrize("use_torchvision", [True, False])
@pytest.mark.parametrize("recipe", RECIPES)
def test_every_recipe_gives_a_normalized_square(recipe, use_torchvision):
    if use_torchvision:
        pytest.importorskip("torchvision")
    torch.manual_seed(0)
    out = train_transform(recipe, 16, MEAN, STD, use_torchvision=use_torchvision)(image())
    assert out.shape == (3, 16, 16) and out.dtype == torch.float32
    channel1 = out[1][out[1] != (0 - MEAN[1]) / STD[1]]  # padding (crop) aside
    assert torch.allclose(channel1, torch.full_like(channel1, (64 / 255 - 0.25) / 0.25),
                          atol=1e-2)


@pytest.mark.parametrize("use_torchvision", [True, False])
def test_eval_resizes_the_shorter_side_and_centre_crops(use_torchvision):
    if use_torchvision:
        pytest.importorskip("torchvision")
    out = eval_transform("crop+flip", 10, (0, 0, 0), (1, 1, 1),
                         use_torchvision=use_torchvision)(image(30, 50))
    assert out.shape == (3, 10, 10)
    # 30x50 -> 10x17 (shorter side 10), centre 10 columns: the ramp's middle part
    assert 0.2 < float(out[0, :, 0].mean()) < float(out[0, :, -1].mean()) < 0.8
    assert torch.allclose(out[2], torch.ones(10, 10))


@pytest.mark.parametrize("use_torchvision", [True, False])
def test_imagenet_style_eval_crops_224_of_256(use_torchvision):
    if use_torchvision:
        pytest.importorskip("torchvision")
    out = eval_transform("random_resized_crop+flip", 28, (0, 0, 0), (1, 1, 1),
                         use_torchvision=use_torchvision)(image(64, 64))
    assert out.shape == (3, 28, 28)
    # a 32-pixel resize (28 / 0.875), centre 28: the ramp's ends are cut
    assert float(out[0].min()) > 0.02 and float(out[0].max()) < 0.98


@pytest.mark.parametrize("use_torchvision", [True, False])
def test_flips_and_crops_vary_per_call_and_follow_the_global_seed(use_torchvision):
    if use_torchvision:
        pytest.importorskip("torchvision")
    transform = train_transform("random_resized_crop+flip", 16, (0, 0, 0), (1, 1, 1),
                                use_torchvision=use_torchvision)
    torch.manual_seed(3)
    first = [transform(image()) for _ in range(6)]
    torch.manual_seed(3)
    again = [transform(image()) for _ in range(6)]
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert len({tuple(x[0, 0].tolist()) for x in first}) > 1


def test_unknown_recipe_names_the_choices():
    with pytest.raises(ValueError, match="augment must be one of none, crop, crop\\+flip, "
                                         "random_resized_crop\\+flip, got 'rrc'"):
        train_transform("rrc", 16, MEAN, STD)
