"""Tests for ``convdrop.viz.masks``: images, reproducible panels, the figure and the CLI."""

from __future__ import annotations

import math

import pytest
import torch

from convdrop.viz.masks import (
    DIGIT_SIZE,
    MAX_IMAGE_SIZE,
    STACK_CHANNELS,
    _title,
    cutout_side,
    default_image,
    draw_masks,
    load_image,
    mask_panels,
    realized_fractions,
    schedule_curve,
)

from conftest import assert_png, write_image

MASKED = ("dropout", "spatial_dropout", "drop_block", "drop_block_shared", "cutout")


@pytest.fixture(scope="module")
def digit() -> torch.Tensor:
    return default_image()


def test_default_image_is_an_upsampled_digit(digit):
    assert digit.shape == (1, DIGIT_SIZE, DIGIT_SIZE) and digit.dtype == torch.float32
    assert 0.0 <= float(digit.min()) and float(digit.max()) <= 1.0
    assert float(digit.max()) > 0.9 and float(digit[:, :, :4].max()) < 0.1  # ink, dark margin


@pytest.mark.parametrize("mode,size,expected,suffix", [
    ("L", (40, 30), (1, 30, 40), ".png"),  # small images are not enlarged
    ("L", (40, 30), (1, 30, 40), ".jpg"),
    ("RGB", (300, 150), (3, 64, 128), ".png"),  # the longer side shrinks to MAX_IMAGE_SIZE
    ("RGB", (150, 300), (3, 128, 64), ".jpg"),
    ("RGBA", (20, 20), (3, 20, 20), ".png"),  # alpha is dropped
])
def test_load_image_modes_and_sizes(tmp_path, mode, size, expected, suffix):
    image = load_image(write_image(tmp_path / f"x{suffix}", mode, size))
    assert tuple(image.shape) == expected and max(expected[1:]) <= MAX_IMAGE_SIZE
    assert 0.0 <= float(image.min()) and float(image.max()) <= 1.0
    if mode == "L" and suffix == ".png":
        assert torch.allclose(image, torch.full(expected, 128 / 255))


def test_load_image_errors_name_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.png"):
        load_image(tmp_path / "nope.png")
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    with pytest.raises(ValueError, match="bad.png"):
        load_image(bad)
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match="empty.png"):
        load_image(empty)


def test_cutout_side_matches_area():
    assert cutout_side(64, 64, 0.1) == 20  # 400 / 4096 = 9.8 %
    assert cutout_side(64, 64, 0.0) == 0
    assert cutout_side(10, 40, 1.0) == 20
    for p in (0.05, 0.1, 0.3):
        assert abs(cutout_side(64, 64, p) ** 2 / 4096 - p) < 0.02


def test_schedule_curve_is_the_linear_ramp():
    curve = schedule_curve(0.1, 1000)
    assert curve.shape == (1001,)
    assert curve[0] == 0 and math.isclose(float(curve[500]), 0.05) and curve[-1] == 0.1
    assert bool((curve.diff() > 0).all())


def test_panels_same_seed_identical_different_seed_differ(digit):
    a, b = mask_panels(digit, 0.1, 7, seed=3), mask_panels(digit, 0.1, 7, seed=3)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    c = mask_panels(digit, 0.1, 7, seed=4)
    for name in ("dropout", "drop_block", "drop_block_shared", "cutout"):
        assert not torch.equal(a[name + "_mask"], c[name + "_mask"]), name


def test_panels_shapes_and_masked_images(digit):
    panels = mask_panels(digit, 0.1, 7, seed=0, steps=10)
    assert panels["schedule"].shape == (11,)
    expected = {"dropout": 1, "spatial_dropout": STACK_CHANNELS, "drop_block": 3,
                "drop_block_shared": 3, "cutout": 1}
    for name in MASKED:
        mask, shown = panels[name + "_mask"], panels[name]
        assert mask.dtype == torch.bool and mask.shape == (expected[name], 64, 64)
        assert shown.shape == mask.shape
        assert bool((shown[mask] == 0).all())
        assert torch.equal(shown[~mask], digit.expand(mask.shape)[~mask])  # unscaled, unchanged
    shared = panels["drop_block_shared_mask"]
    assert torch.equal(shared[0], shared[1]) and torch.equal(shared[0], shared[2])
    per_channel = panels["drop_block_mask"]
    assert not torch.equal(per_channel[0], per_channel[1])
    whole = panels["spatial_dropout_mask"].flatten(1)
    assert bool((whole.all(1) | ~whole.any(1)).all())  # channels drop whole or not at all
    assert int(panels["cutout_mask"][0].sum()) <= cutout_side(64, 64, 0.1) ** 2


def test_panels_drop_about_p(digit):
    """Mean dropped fraction over 10 seeds within 0.03 of p = 0.1.

    The per-draw std is about 0.005 for dropout (4096 units) and about 0.02 for
    per-channel DropBlock (~25 blocks), so 0.03 is > 4 standard errors of a 10-seed mean.
    """
    fractions = {"dropout": [], "drop_block": [], "drop_block_shared": []}
    for seed in range(10):
        panels = mask_panels(digit, 0.1, 7, seed=seed, steps=1)
        for name in fractions:
            fractions[name].append(float(panels[name + "_mask"].float().mean()))
    for name, values in fractions.items():
        assert abs(sum(values) / len(values) - 0.1) < 0.03, name


def test_panels_on_rgb_image():
    image = torch.rand(3, 20, 30, generator=torch.Generator().manual_seed(0))
    panels = mask_panels(image, 0.2, 5, seed=0, steps=5)
    assert panels["dropout_mask"].shape == (3, 20, 30)
    assert panels["cutout_mask"].shape == (3, 20, 30)
    assert torch.equal(panels["image"], image)


@pytest.mark.parametrize("kwargs,match", [
    ({"image": torch.zeros(2, 8, 8)}, "C = 1 or 3"),
    ({"p": 1.5}, "p must be"),
    ({"block_size": 0}, "block_size"),
    ({"steps": 0}, "steps"),
])
def test_panels_reject_bad_arguments(digit, kwargs, match):
    args = {"image": digit, "p": 0.1, "block_size": 7, "seed": 0, **kwargs}
    with pytest.raises(ValueError, match=match):
        mask_panels(**args)


def test_draw_masks_writes_png_atomically(tmp_path, digit):
    out = tmp_path / "sub" / "m.png"
    result = draw_masks(mask_panels(digit, 0.1, 7, 0, steps=10), out, p=0.1, block_size=7,
                        seed=0, dpi=30)
    assert result == out
    assert_png(out)
    assert [f.name for f in out.parent.iterdir()] == ["m.png"]  # no temp file left behind


def test_realized_fractions_are_the_masks_means_of_one_draw():
    panels = mask_panels(default_image(), 0.1, 7, seed=0, steps=10)
    fractions = realized_fractions(panels)
    assert set(fractions) == {"dropout", "spatial_dropout", "drop_block", "drop_block_shared",
                              "cutout"}
    for name, fraction in fractions.items():
        assert fraction == pytest.approx(float(panels[name + "_mask"].float().mean()))
    assert "one draw:" in _title("drop_block", panels["drop_block_mask"], 7, 0.1)
    assert "p = 0.1" in _title("spatial_dropout", panels["spatial_dropout_mask"], 7, 0.1)
