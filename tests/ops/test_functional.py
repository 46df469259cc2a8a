"""The public ops: semantics, statistics, dtypes, layouts, autograd and errors."""

from __future__ import annotations

import math

import pytest
import torch

import convdrop
from convdrop import block_mask, cutout, drop_block, dropout, spatial_dropout

from conftest import gen


@pytest.mark.parametrize("spatial,block", [
    ((7, 7), 7), ((14, 14), 7), ((8, 8), 3), ((16, 16), (4, 2)), ((5, 5), 9), ((9, 9), 2),
    ((40,), 5), ((6, 6, 6), 3), ((3, 3), (3, 1)),
])
@pytest.mark.parametrize("p", [0.1, 0.25])
def test_dropped_fraction_within_two_percent(spatial, block, p):
    """Calibrated masks drop p within 2 % relative, on 2.5M+ units per case.

    The per-map standard error is at most sqrt(p(1-p)/maps) ≈ 0.6 % relative here
    (whole-map drops on 7x7/k7 are the worst case), so 2 % is > 3 s.e.
    """
    maps = max(2_560_000 // math.prod(spatial), 256_000 if spatial == (7, 7) else 0)
    shape = (maps // 32, 32, *spatial)
    fraction = block_mask(shape, p, block, generator=gen(1)).float().mean().item()
    assert fraction == pytest.approx(p, rel=0.02)


def test_uncalibrated_is_the_paper_rate():
    shape = (512, 32, 14, 14)
    paper = block_mask(shape, 0.1, 7, calibrated=False, generator=gen(2)).float().mean()
    assert 0.085 < paper < 0.097  # the paper's gamma under-drops a little (overlaps)


def test_drop_block_zeroes_exactly_the_block_mask():
    x = torch.rand(4, 8, 12, 12) + 0.5
    mask = block_mask(x.shape, 0.2, 3, generator=gen(3))
    y = drop_block(x, 0.2, 3, generator=gen(3))
    assert torch.equal(y == 0, mask)
    scale = mask.numel() / (~mask).sum()
    assert torch.allclose(y[~mask], x[~mask] * scale)


def test_shared_channels_mask_is_the_same_in_every_channel():
    mask = block_mask((4, 6, 12, 12), 0.3, 3, shared_channels=True, generator=gen())
    assert (mask == mask[:, :1]).all()
    y = drop_block(torch.ones(4, 6, 12, 12), 0.3, 3, shared_channels=True, generator=gen())
    assert ((y == 0) == (y[:, :1] == 0)).all()


def test_per_channel_masks_differ_between_channels():
    mask = block_mask((2, 6, 14, 14), 0.3, 3, generator=gen())
    assert not (mask == mask[:, :1]).all()


@pytest.mark.parametrize("scale", ["batch", "expected"])
def test_expectation_is_preserved(scale):
    """Mean over 400 draws of a constant input: within 1 % (s.e. ≈ 0.15 %)."""
    x = torch.ones(400, 16, 14, 14)
    y = drop_block(x, 0.2, 5, scale=scale, generator=gen(4))
    assert y.mean().item() == pytest.approx(1.0, rel=0.01)
    if scale == "batch":  # exact by construction over the whole tensor
        assert y.double().sum().item() == pytest.approx(x.numel(), rel=1e-5)


def test_everything_dropped_gives_zeros_not_nan():
    x = torch.randn(2, 3, 5, 5, requires_grad=True)
    for scale in ("batch", "expected"):
        y = drop_block(x, 1.0, 3, scale=scale)
        assert torch.equal(y, torch.zeros_like(y))
        y.sum().backward()
        assert torch.equal(x.grad, torch.zeros_like(x))
        x.grad = None
    # All dropped by chance (block = map, high p): still zeros, never NaN.
    y = drop_block(torch.ones(1, 1, 4, 4), 0.999, 4, generator=gen(0))
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_dtypes(dtype):
    x = torch.rand(64, 256, 14, 14).add(0.5).to(dtype)
    y = drop_block(x, 0.1, 7, generator=gen(5))
    assert y.dtype == dtype and torch.isfinite(y).all()
    kept = y != 0
    assert 0.85 < kept.float().mean() < 0.95  # torchvision returns all zeros for fp16 here
    ratio = (y[kept].double() / x[kept].double())
    assert torch.allclose(ratio, ratio[0].expand_as(ratio), rtol=1e-2)


def test_channels_last_and_non_contiguous_inputs():
    base = torch.rand(4, 8, 10, 10) + 0.5
    want = drop_block(base, 0.2, 3, generator=gen(6))
    cl = base.to(memory_format=torch.channels_last)
    got = drop_block(cl, 0.2, 3, generator=gen(6))
    assert got.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(got, want)
    strided = torch.rand(4, 16, 10, 20)[:, ::2, :, ::2]
    got = drop_block(strided, 0.2, 3, generator=gen(6))
    assert torch.equal(got, drop_block(strided.contiguous(), 0.2, 3, generator=gen(6)))


def test_inplace_writes_into_x_including_strided_views():
    x = torch.rand(2, 4, 9, 9) + 0.5
    want = drop_block(x.clone(), 0.3, 3, generator=gen(7))
    out = drop_block(x, 0.3, 3, generator=gen(7), inplace=True)
    assert out is x and torch.equal(x, want)
    big = torch.rand(2, 8, 9, 9) + 0.5
    view = big[:, 1::2]
    untouched = big[:, ::2].clone()
    want = drop_block(view.clone(), 0.3, 3, generator=gen(8))
    drop_block(view, 0.3, 3, generator=gen(8), inplace=True)
    assert torch.equal(big[:, 1::2], want) and torch.equal(big[:, ::2], untouched)


def test_identity_in_eval_and_at_p_zero():
    x = torch.randn(2, 3, 8, 8)
    assert drop_block(x, 0.5, 3, training=False) is x
    assert drop_block(x, 0.0, 3) is x
    assert spatial_dropout(x, 0.5, training=False) is x
    assert dropout(x, 0.0) is x


def test_generator_is_reproducible_and_leaves_global_rng_alone():
    x = torch.randn(2, 3, 12, 12)
    state = torch.get_rng_state()
    a = drop_block(x, 0.3, 3, generator=gen(9))
    b = drop_block(x, 0.3, 3, generator=gen(9))
    assert torch.equal(a, b)
    assert torch.equal(torch.get_rng_state(), state)


def test_gradient_is_incoming_gradient_times_mask_and_scale():
    x = torch.rand(3, 4, 10, 10, dtype=torch.float64).add(0.5).requires_grad_()
    y = drop_block(x, 0.25, 4, generator=gen(10))
    g = torch.randn_like(y)
    y.backward(g)
    factor = (y / x).detach()  # mask * scale
    assert torch.allclose(x.grad, g * factor)


def test_gradcheck():
    x = torch.rand(2, 2, 6, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: drop_block(t, 0.3, 2, generator=gen(11)), (x,))


def test_backward_saves_only_seeds():
    x = torch.randn(8, 64, 14, 14, requires_grad=True)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        drop_block(x, 0.1, 7, generator=gen(12))
    assert len(saved) == 1 and saved[0].dtype == torch.int64
    assert saved[0].numel() * 8 < 0.02 * x.numel() * 4


def test_spatial_dropout_drops_whole_channels():
    x = torch.rand(64, 32, 5, 5) + 0.5
    y = spatial_dropout(x, 0.25, generator=gen(13))
    dropped = (y == 0).flatten(2)
    assert (dropped.all(-1) == dropped.any(-1)).all()
    assert dropped.all(-1).float().mean() == pytest.approx(0.25, abs=0.03)
    assert torch.allclose(y[y != 0], x[y != 0] / 0.75)


def test_dropout_rate_and_scale():
    x = torch.ones(1_000_000)
    y = dropout(x, 0.3, generator=gen(14))
    assert (y == 0).float().mean().item() == pytest.approx(0.3, abs=0.002)
    assert torch.allclose(y[y != 0], torch.tensor(1 / 0.7))
    assert torch.equal(dropout(x, 1.0), torch.zeros_like(x))


def test_cutout_patch_positions_and_clipping():
    images = torch.ones(500, 3, 10, 10)
    out = cutout(images, 4, generator=gen(15))
    cut = out[:, 0] == 0
    assert ((out == 0) == cut[:, None]).all()  # same patch in every channel
    areas = cut.flatten(1).sum(1)
    assert areas.max() == 16 and areas.min() >= 4  # clipped at corners: at least 2x2
    assert (areas < 16).any()  # some patches hit the border
    single = cutout(torch.ones(3, 10, 10), (2, 5), count=2, generator=gen(16))
    assert single.shape == (3, 10, 10) and (single == 0).any()


@pytest.mark.parametrize("call,match", [
    (lambda x: drop_block(x, 1.5, 3), r"p must be a probability in \[0, 1\], got 1.5"),
    (lambda x: drop_block(x, float("nan"), 3), r"p must be a probability .* got nan"),
    (lambda x: drop_block(x, 0.1, 0), r"block_size entries must be ints >= 1, got 0"),
    (lambda x: drop_block(x, 0.1, (3, 3, 3)), r"tuple of 2 ints .* got \(3, 3, 3\)"),
    (lambda x: drop_block(x[0, 0], 0.1, 3), r"x must have 3 \(N, C, L\) or 4 .* got shape"),
    (lambda x: drop_block(x, 0.1, 3, scale="mean"), r"scale must be one of .* got 'mean'"),
    (lambda x: block_mask((2, 3), 0.1, 3), r"shape must have .* got shape \(2, 3\)"),
    (lambda x: cutout(x, 2, count=0), r"count must be an int >= 1, got 0"),
])
def test_errors_name_argument_and_value(call, match):
    with pytest.raises(ValueError, match=match):
        call(torch.randn(2, 3, 8, 8))


def test_integer_tensor_is_a_type_error():
    with pytest.raises(TypeError, match=r"floating-point tensor .* got dtype torch.int64"):
        drop_block(torch.ones(1, 1, 4, 4, dtype=torch.int64), 0.1, 3)
    with pytest.raises(TypeError, match="generator must be a torch.Generator"):
        drop_block(torch.ones(1, 1, 4, 4), 0.1, 3, generator=0)


def test_public_names():
    for name in ("drop_block", "block_mask", "spatial_dropout", "dropout", "cutout",
                 "DropBlock1d", "DropBlock2d", "DropBlock3d", "SpatialDropout", "Cutout"):
        assert name in convdrop.__all__ and hasattr(convdrop, name)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_mask_made_on_device():
    x = (torch.rand(8, 16, 14, 14, device="cuda") + 0.5).requires_grad_(True)  # a leaf
    g = torch.Generator(device="cuda").manual_seed(0)
    y = drop_block(x, 0.1, 7, generator=g)
    assert y.device.type == "cuda"
    y.sum().backward()
    assert torch.equal(x.grad == 0, y == 0)
    for dtype in (torch.float16, torch.bfloat16):
        assert (drop_block(x.detach().to(dtype), 0.1, 7) != 0).any()


@pytest.mark.parametrize("shape,block,p,shared", [
    ((16, 32, 14, 14), 7, 0.1, False),  # under one seed per map: counted in closed form
    ((16, 32, 16, 16), 7, 0.3, False),  # pairs and triples of overlapping blocks
    ((4, 8, 12, 12), 3, 0.2, False),  # crowded maps: counted by painting a bool copy
    ((8, 16, 14, 14), 5, 0.2, True),
])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "slice"])
def test_batch_scale_is_count_over_kept_exactly(shape, block, p, shared, layout):
    base = torch.rand(shape[0], shape[1] * 2, *shape[2:], dtype=torch.float64) + 0.5
    x = {"contiguous": base[:, :shape[1]].contiguous(),
         "channels_last": base[:, :shape[1]].contiguous(memory_format=torch.channels_last),
         "slice": base[:, ::2]}[layout]
    mask = block_mask(x.shape, p, block, shared_channels=shared, generator=gen(17))
    y = drop_block(x, p, block, shared_channels=shared, generator=gen(17))
    assert torch.equal(y == 0, mask)
    kept = int((~mask).sum())
    assert torch.allclose(y[~mask], x[~mask] * (mask.numel() / kept))


# --- bad input found by trying it (each refused before anything is written) ----------

@pytest.mark.parametrize("make", [
    lambda: torch.ones(1, 2, 6, 6, requires_grad=True),
    lambda: torch.nn.Parameter(torch.ones(1, 2, 6, 6)),
])
def test_inplace_on_a_leaf_that_requires_grad_is_refused_before_writing(make):
    x = make()
    before = x.detach().clone()
    with pytest.raises(RuntimeError, match=r"inplace=True cannot write into a leaf tensor"):
        drop_block(x, 0.5, 3, inplace=True, generator=gen())
    assert torch.equal(x.detach(), before)
    view = x[:, :1]
    with pytest.raises(RuntimeError, match=r"a view of a leaf tensor"):
        drop_block(view, 0.5, 3, inplace=True, generator=gen())
    assert torch.equal(x.detach(), before)
    with torch.no_grad():  # allowed where autograd is off, as for torch's own ops
        drop_block(x, 0.5, 3, inplace=True, generator=gen())
    assert not torch.equal(x.detach(), before)


def test_inplace_on_a_non_leaf_still_works_with_autograd():
    leaf = torch.ones(1, 2, 6, 6, requires_grad=True)
    x = leaf * 2.0
    y = drop_block(x, 0.5, 3, inplace=True, generator=gen(1))
    y.sum().backward()
    assert torch.equal(leaf.grad == 0, y == 0)


@pytest.mark.parametrize("p", [0.99999, 0.999999])
def test_expected_scale_refuses_a_factor_float16_cannot_hold(p):
    x = torch.ones(2, 3, 8, 8, dtype=torch.float16)
    with pytest.raises(ValueError, match=r"p=0.9999.* scale='expected' .* torch.float16"):
        drop_block(x, p, 3, scale="expected")
    y = drop_block(x.float(), p, 3, scale="expected", generator=gen())  # float32 holds it
    assert torch.isfinite(y).all()


def test_expected_scale_just_below_the_float16_limit_stays_finite():
    x = torch.ones(64, 64, 8, 8, dtype=torch.float16)
    y = drop_block(x, 0.9999, 1, scale="expected", generator=gen(2))
    assert torch.isfinite(y).all() and (y > 0).any()


def test_batch_scale_saturates_in_float16():
    """One kept unit of 90,000: the factor 90,000 is above float16's 65504."""
    x = torch.ones(1, 1, 300, 300, dtype=torch.float16)
    for seed in range(40):
        y = drop_block(x, 0.99999, 1, generator=gen(seed))
        assert torch.isfinite(y).all()
        if int((y > 0).sum()) == 1:
            assert float(y.max()) == 65504.0
            break
    else:
        pytest.fail("no draw kept exactly one unit")


@pytest.mark.parametrize("call,error,match", [
    (lambda: block_mask((2, 3, -1, 8), 0.5, 3), ValueError,
     r"shape entries must be ints >= 0, got \(2, 3, -1, 8\)"),
    (lambda: block_mask((2, 3, 4.5, 8), 0.5, 3), ValueError, r"shape entries must be ints"),
    (lambda: block_mask("abc", 0.5, 3), ValueError, r"shape must be a sequence of ints"),
    (lambda: drop_block(torch.ones(2, 3, 8, 8).to(torch.float8_e4m3fn), 0.5, 3), TypeError,
     r"x must be a floating-point tensor \(float16, .* got dtype torch.float8_e4m3fn"),
    (lambda: cutout(torch.ones(3, 8, 8), 0), ValueError, r"size entries must be ints >= 1"),
    (lambda: cutout(torch.ones(8, 8), 4), ValueError,
     r"images must have 3 \(C, H, W\): one image or 4 \(N, C, H, W\): a batch dimensions"),
])
def test_bad_input_gets_the_right_error(call, error, match):
    with pytest.raises(error, match=match):
        call()


@pytest.mark.parametrize("calibrated", [True, False])
def test_empty_maps_give_an_empty_mask(calibrated):
    mask = block_mask((2, 3, 0, 8), 0.5, 3, calibrated=calibrated)
    assert mask.shape == (2, 3, 0, 8) and mask.dtype == torch.bool
    assert block_mask((0, 3, 5, 5), 0.5, 3).shape == (0, 3, 5, 5)
    x = torch.ones(2, 3, 0, 8)
    assert drop_block(x, 0.5, 3).shape == x.shape
