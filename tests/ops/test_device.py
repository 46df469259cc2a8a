"""The generic sync-free path (``_device_path``): it runs on ``meta`` tensors (so it asks
the device nothing), applies exactly its mask and factor, and keeps only bits for
backward. Its statistics are checked in ``test_exactness.py`` (paths ``generic_*``)."""

from __future__ import annotations

import math

import pytest
import torch

from convdrop import DropBlock1d, DropBlock2d, DropBlock3d, block_mask, drop_block
from convdrop.ops import device as generic
from convdrop.ops import native as _native
from convdrop.ops.sampling import Geometry, dense_mask, sample_seeds


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture
def forced_generic():
    with _native.forced("torch-generic"):
        yield


SHAPES = [((2, 3, 11), 3), ((2, 3, 9, 8), (3, 2)), ((2, 3, 5, 6, 4), 2), ((2, 3, 7, 7), 7)]


@pytest.mark.parametrize("shape,block", SHAPES)
@pytest.mark.parametrize("shared", [False, True])
@pytest.mark.parametrize("scale", ["batch", "expected"])
@pytest.mark.parametrize("p", [0.1, 1.0])
def test_meta_tensors_forward_and_backward(shape, block, shared, scale, p):
    """Meta tensors carry no data: a host sync (.item(), int(t), nonzero) would raise."""
    x = torch.empty(shape, device="meta", requires_grad=True)
    y = drop_block(x, p, block, shared_channels=shared, scale=scale)
    assert y.device.type == "meta" and y.shape == x.shape and y.dtype == x.dtype
    y.sum().backward()
    assert x.grad is not None and x.grad.shape == x.shape
    mask = block_mask(shape, p, block, shared_channels=shared, device="meta")
    assert mask.device.type == "meta" and mask.shape == x.shape and mask.dtype == torch.bool


@pytest.mark.parametrize("layer,shape", [(DropBlock1d, (2, 4, 12)), (DropBlock2d, (2, 4, 9, 9)),
                                         (DropBlock3d, (2, 4, 5, 5, 5))])
def test_meta_layers_train_and_eval(layer, shape):
    module = layer(0.2, 3, shared_channels=True).to("meta")
    x = torch.empty(shape, device="meta", requires_grad=True)
    module(x).sum().backward()
    assert x.grad.device.type == "meta"
    assert module.eval()(x) is x


@pytest.mark.parametrize("shape,block", SHAPES + [((4, 8, 14, 14), 7)])
@pytest.mark.parametrize("shared", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_forward_is_x_times_factor_times_keep(forced_generic, shape, block, shared, dtype):
    """Same generator state, same seed map: drop_block zeroes exactly block_mask's units and
    scales the rest by numel / kept; backward does the same to the gradient."""
    x = (torch.rand(shape, generator=gen(1), dtype=dtype) + 0.5).requires_grad_(True)
    mask = block_mask(shape, 0.3, block, shared_channels=shared, generator=gen(2))
    y = drop_block(x, 0.3, block, shared_channels=shared, generator=gen(2))
    assert torch.equal(y == 0, mask)  # (a 7x7 map at block 7 may keep everything)
    factor = mask.numel() / int((~mask).sum())
    torch.testing.assert_close(y[~mask], x.detach()[~mask] * factor)
    grad = torch.rand(shape, generator=gen(3), dtype=dtype)
    y.backward(grad)
    torch.testing.assert_close(x.grad, torch.where(mask, 0, grad * factor).to(dtype))


def test_expected_scale_and_everything_dropped(forced_generic):
    x = torch.rand(2, 3, 6, 6) + 0.5
    y = drop_block(x, 0.25, 3, scale="expected", generator=gen(4))
    kept = y != 0
    torch.testing.assert_close(y[kept], x[kept] / 0.75)
    for p, scale in [(1.0, "batch"), (1.0, "expected"), (0.999999, "batch")]:
        z = drop_block(x, p, 6, scale=scale, generator=gen(5))
        assert torch.equal(z, torch.zeros_like(x))  # zeros, never NaN


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_types_are_scaled_in_float32(forced_generic, dtype):
    x = torch.rand(4, 8, 10, 10, generator=gen(6)) + 0.5
    y = drop_block(x.to(dtype), 0.2, 3, generator=gen(7))
    mask = block_mask(x.shape, 0.2, 3, generator=gen(7))
    factor = mask.numel() / int((~mask).sum())
    assert y.dtype == dtype and torch.equal(y == 0, mask)
    assert torch.equal(y[~mask], (x.to(dtype).float()[~mask] * factor).to(dtype))


def test_layout_and_inplace(forced_generic):
    x = torch.rand(2, 4, 8, 8).contiguous(memory_format=torch.channels_last) + 0.5
    y = drop_block(x, 0.3, 3, generator=gen(8))
    assert y.is_contiguous(memory_format=torch.channels_last) and (y == 0).any()
    leaf = (torch.rand(2, 4, 8, 8) + 0.5).requires_grad_(True)
    source = leaf * 1
    out = drop_block(source, 0.3, 3, generator=gen(9), inplace=True)
    assert out is source and torch.equal(out, drop_block(leaf.detach(), 0.3, 3,
                                                         generator=gen(9)))
    out.sum().backward()
    assert torch.equal(leaf.grad == 0, out.detach() == 0)


@pytest.mark.parametrize("shape,block,shared", [((3, 4, 9, 9), (3, 3), False),
                                                ((2, 5, 13), (4,), True),
                                                ((2, 2, 5, 6, 4), (2, 3, 2), False),
                                                ((2, 3, 6, 6), (6, 6), False)])
def test_paint_matches_the_max_pool_mask(shape, block, shared):
    geometry = Geometry.of(shape, block, shared)
    ids = sample_seeds(geometry.trials, 0.2, generator=gen(10))
    seed_map = torch.zeros(geometry.trials, dtype=torch.bool)
    seed_map[ids] = True
    seed_map = seed_map.view(geometry.maps, *geometry.valid)
    assert torch.equal(generic.paint(seed_map, geometry), dense_mask(ids, geometry))
    bits = generic.pack_bits(seed_map)
    assert bits.dtype == torch.uint8 and bits.numel() == math.ceil(geometry.trials / 8)
    assert torch.equal(generic.unpack_bits(bits, geometry), seed_map)


def test_seed_rate_is_exact_to_31_bits():
    geometry = Geometry.of((1, 1, 1000, 1000), (1, 1), False)
    for gamma, expected in [(0.0, 0), (1.0, 10**6), (2.0**-31, None)]:
        count = int(generic.draw_seed_map(geometry, gamma, gen(11), "cpu").sum())
        assert expected is None or count == expected
    # 2**-31 over 1e6 positions: almost surely no seed (P = 0.9995), not 2**-24's rounding.


@pytest.mark.parametrize("shape", [(8, 64, 14, 14), (8, 64, 7, 7), (4, 32, 16, 16)])
def test_backward_keeps_bits_and_the_factor(forced_generic, shape):
    """Saved for backward: ceil(maps * positions / 8) bytes of seeds + a 4-byte factor,
    at most 1.3 % of a float32 input at block 7."""
    saved: list[torch.Tensor] = []
    x = torch.rand(shape, requires_grad=True)
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        drop_block(x, 0.1, 7, generator=gen(12))
    nbytes = sum(t.numel() * t.element_size() for t in saved)
    geometry = Geometry.of(shape, (7, 7), False)
    assert nbytes == generic.saved_bytes(geometry)
    assert nbytes <= 0.013 * x.numel() * x.element_size()
    assert all(t.dtype in (torch.uint8, torch.float32) and t.numel() != x.numel() for t in saved)


class RecordOps(torch.utils._python_dispatch.TorchDispatchMode):
    """Names of the aten ops run under it."""

    def __init__(self) -> None:
        super().__init__()
        self.names: set[str] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.names.add(func.overloadpacket.__name__)
        return func(*args, **(kwargs or {}))


SYNCING = {"_local_scalar_dense", "item", "nonzero", "masked_select", "unique", "_unique2",
           "index", "index_put_", "bincount", "searchsorted", "equal", "is_nonzero"}


@pytest.mark.parametrize("shared", [False, True])
@pytest.mark.parametrize("scale", ["batch", "expected"])
def test_no_op_that_reads_data_back_on_real_tensors(forced_generic, shared, scale):
    """On CPU tensors too: no scalar read-back, no data-dependent sizes, forward or backward."""
    x = torch.rand(4, 6, 14, 14, requires_grad=True)
    with RecordOps() as ops:
        drop_block(x, 0.1, 7, shared_channels=shared, scale=scale, generator=gen(13)).sum() \
            .backward()
        block_mask(x.shape, 0.1, 7, shared_channels=shared, generator=gen(14))
    assert "randint" in ops.names and not ops.names & SYNCING, ops.names & SYNCING


def test_float16_batch_factor_saturates_instead_of_overflowing():
    """As on the CPU paths: one kept unit of 90,000 gives 65504, not inf."""
    x = torch.ones(1, 1, 300, 300, dtype=torch.float16)
    geometry = Geometry.of(tuple(x.shape), (1, 1), False)
    for seed in range(60):
        seeds = generic.draw_seed_map(geometry, 0.99999, torch.Generator().manual_seed(seed),
                                      x.device)
        if int((~seeds).sum()) == 1:
            out, factor, _ = generic.forward(x, seeds, geometry, "batch", 0.99999)
            assert float(factor) == 65504.0 and float(out.max()) == 65504.0
            return
    pytest.fail("no draw kept exactly one unit")
