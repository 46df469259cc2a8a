"""The batched random resized crop (the in-memory ImageNet-style recipe)."""

from __future__ import annotations

import torch

from convdrop.lab.data.augment import Augment

from conftest import gen

RESIZED = Augment(crop_pad=0, flip=False, resized_crop=True)


def ramp(n: int = 16, size: int = 12) -> torch.Tensor:
    """(n, 3, size, size) images increasing left to right."""
    return torch.linspace(0, 1, size).expand(n, 3, size, size).clone()


def test_a_crop_of_a_ramp_is_a_zoomed_ramp_inside_its_range():
    out = RESIZED(ramp(), gen(0))
    assert out.shape == (16, 3, 12, 12)
    assert out.min() >= 0 and out.max() <= 1
    assert (out.diff(dim=-1) >= -1e-6).all()  # no flip: still increasing
    assert torch.allclose(out.diff(dim=-2), torch.zeros(()), atol=1e-6)  # rows unchanged
    spans = out[:, 0, 0, -1] - out[:, 0, 0, 0]
    assert spans.max() <= 1 + 1e-6 and spans.min() < 0.9  # some crops zoom in
    assert len({round(float(s), 4) for s in spans}) > 8  # per-sample boxes


def test_constant_images_stay_constant_and_draws_follow_the_generator():
    flat = torch.full((5, 2, 9, 9), 0.25)
    assert torch.allclose(RESIZED(flat, gen(1)), flat)
    both = Augment(crop_pad=0, flip=True, resized_crop=True)
    assert torch.equal(both(ramp(), gen(2)), both(ramp(), gen(2)))
    assert not torch.equal(both(ramp(), gen(2)), both(ramp(), gen(3)))


def test_boxes_cover_eight_to_hundred_percent_of_the_area():
    """On a ramp the span of a row is the box width (a fraction of the side): at least
    sqrt(0.08 * 3/4) = 0.245, at most 1."""
    out = RESIZED(ramp(400, 32), gen(4))
    widths = out[:, 0, 0, -1] - out[:, 0, 0, 0]
    assert widths.min() > 0.24 and widths.max() <= 1.0 + 1e-6
    assert (widths > 0.95).any() and (widths < 0.4).any()
