"""The fused CPU kernel: built, bit-identical to the PyTorch-level path, and bypassed
wherever it does not apply (layouts, dtypes, devices, or turned off)."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from contextlib import nullcontext

import pytest
import torch

from convdrop import drop_block
from convdrop.ops import native as _native
from convdrop.ops.sampling import Geometry, count_dropped, dense_mask, fill_blocks_, sample_seeds

from conftest import gen


def both_paths(x: torch.Tensor, grad: torch.Tensor, *args: object,
               **kwargs: object) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Output and input gradient of drop_block on the fused and on the PyTorch path,
    from the same generator state."""
    results = []
    for fused in (True, False):
        leaf = x.clone().requires_grad_(True)
        source = leaf * 1 if kwargs.get("inplace") else leaf  # in place needs a non-leaf
        with nullcontext() if fused else _native.disabled():
            y = drop_block(source, *args, generator=gen(3), **kwargs)
            y.backward(grad)
        results.append((y.detach(), leaf.grad))
    return results


def test_kernel_is_built():
    """`make install` compiles src/convdrop/ops/_kernel.c; without it every CPU call runs the
    slower PyTorch-level path (still correct), so a silent build failure must show here."""
    assert _native._kernel is not None, _native.status()
    assert _native.status() in ("fused CPU kernel on", "fused CPU kernel off (disabled)")


CASES = [  # (shape, block): 1d/2d/3d, clipped, block 1, block = map, even and rectangular
    ((4, 8, 14, 14), 7), ((3, 5, 7, 7), 7), ((2, 3, 16, 16), (4, 2)), ((5, 6, 30), 5),
    ((2, 3, 6, 7, 5), (2, 3, 2)), ((2, 3, 5, 5), 9), ((4, 4, 9, 9), 2), ((2, 2, 8, 8), 1),
    ((2, 3, 40, 40), (3, 40)),  # block spans whole rows: merged runs
    ((2, 3, 4, 6, 5), (2, 6, 5)),  # block spans whole planes: one run
]


@pytest.mark.parametrize("shape,block", CASES)
@pytest.mark.parametrize("shared,dtype,scale,p,inplace", [
    (False, torch.float32, "batch", 0.1, False),
    (True, torch.float32, "batch", 0.5, False),
    (False, torch.float64, "expected", 0.3, True),
    (True, torch.float64, "batch", 0.95, True),
    (False, torch.float32, "batch", 1.0, False),
])
def test_fused_and_pytorch_paths_give_the_same_bits(shape, block, shared, dtype, scale, p,
                                                    inplace):
    x = torch.randn(shape, dtype=dtype, generator=gen(1))
    grad = torch.randn(shape, dtype=dtype, generator=gen(2))
    assert _native.handles(x)  # the first path really is the kernel's
    (y_fused, g_fused), (y_torch, g_torch) = both_paths(
        x, grad, p, block, shared_channels=shared, scale=scale, inplace=inplace)
    assert torch.equal(y_fused, y_torch)
    assert torch.equal(g_fused, g_torch)
    assert (y_fused == 0).any()  # not a vacuous case: something was dropped


@pytest.mark.parametrize("shape,block,shared", [
    ((3, 5, 64, 64), (5, 5), False),  # 4096-unit maps: chunks of 4 maps
    ((2, 3, 20, 30, 40), (3, 4, 5), True),  # 24000-unit maps: one map per chunk
    ((7, 3, 33, 17), (6, 4), True),  # samples cut by thread and chunk boundaries
])
@pytest.mark.parametrize("threads", [1, 2, 5])
def test_kernel_result_does_not_depend_on_threads_or_chunks(shape, block, shared, threads):
    """Large maps and odd splits: every thread count paints exactly the reference mask."""
    geometry = Geometry.of(shape, block, shared)
    seeds = sample_seeds(geometry.trials, 0.01, generator=gen(4))
    x = torch.rand(shape, generator=gen(5)) + 1.0  # no zeros of its own
    out = torch.empty_like(x)
    side, padded = _native._padded(geometry)
    n, c = shape[:2]
    _native._kernel.apply(x.data_ptr(), x.numel(), out.data_ptr(), out.numel(), 0, n * c, c,
                          int(shared), side, padded, seeds.data_ptr(), seeds.numel(), 2.0,
                          threads)
    mask = dense_mask(seeds, geometry).expand(shape)
    assert mask.any()
    assert torch.equal(out == 0, mask)
    assert torch.equal(out[~mask], x[~mask] * 2.0)


@pytest.mark.parametrize("shape,block,shared,gamma", [
    ((8, 16, 14, 14), (7, 7), False, 0.02), ((8, 16, 14, 14), (3, 3), False, 0.2),
    ((6, 4, 9, 8), (3, 2), True, 0.3), ((4, 5, 31), (4,), False, 0.1),
    ((2, 3, 6, 7, 5), (2, 3, 2), False, 0.4), ((8, 16, 7, 7), (7, 7), True, 0.5),
])
def test_count_matches_the_painted_mask(shape, block, shared, gamma):
    geometry = Geometry.of(shape, block, shared)
    seeds = sample_seeds(geometry.trials, gamma, generator=gen(6))
    painted = int(fill_blocks_(torch.zeros(shape, dtype=torch.bool), seeds, geometry,
                               True).sum())
    assert _native.count(seeds, geometry) == painted
    assert count_dropped(seeds, geometry) == painted


def as_rows(plane: torch.Tensor) -> list[str]:
    return ["".join("#" if v == 0 else "." for v in row) for row in plane.tolist()]


def test_exact_blocks_on_a_small_grid():
    """5x5 maps, block 3, so 3x3 valid corners (9 ids a map): ids 0 and 4 are corners
    (0, 0) and (1, 1) of map 0; id 9 + 8 is corner (2, 2) of map 1."""
    geometry = Geometry.of((1, 2, 5, 5), (3, 3), False)
    x = torch.ones(1, 2, 5, 5)
    out = _native.apply(x, torch.empty_like(x), torch.tensor([0, 4, 9 + 8]), geometry, 1.0)
    assert as_rows(out[0, 0]) == ["###..", "####.", "####.", ".###.", "....."]
    assert as_rows(out[0, 1]) == [".....", ".....", "..###", "..###", "..###"]


def test_dropped_units_are_zero_even_for_inf_and_nan():
    x = torch.full((2, 4, 9, 9), float("inf"))
    x[0, 0, 0, 0] = float("nan")
    y = drop_block(x, 0.5, 3, generator=gen(7))
    mask = y == 0
    assert mask.any() and not y[~mask].isfinite().any()


@pytest.mark.parametrize("make", [
    lambda x: x.to(memory_format=torch.channels_last),
    lambda x: x[:, ::2],
    lambda x: x.half(),
    lambda x: x.bfloat16(),
])
def test_other_layouts_and_dtypes_take_the_pytorch_path(make, monkeypatch):
    x = make(torch.randn(4, 6, 12, 12, generator=gen(8)))
    assert not _native.handles(x)
    calls = []
    monkeypatch.setattr(_native, "apply", lambda *a: calls.append(a))
    y = drop_block(x, 0.2, 3, generator=gen(9))
    assert calls == []
    assert y.dtype == x.dtype and y.shape == x.shape and (y == 0).any()


def test_a_non_contiguous_gradient_is_handled():
    """``y.sum().backward()`` hands backward an expanded (stride-0) gradient."""
    x = torch.randn(3, 4, 10, 10, generator=gen(10), requires_grad=True)
    y = drop_block(x, 0.3, 3, generator=gen(11))
    y.sum().backward()
    kept = y.detach() != 0
    scale = (y.detach()[kept] / x.detach()[kept]).mean()
    assert torch.equal(x.grad == 0, ~kept)
    torch.testing.assert_close(x.grad[kept], scale.expand(int(kept.sum())))


def test_disabled_restores_the_previous_state():
    before = _native.active()
    with _native.disabled():
        assert not _native.active()
        assert not _native.handles(torch.zeros(1, 1, 4, 4))
    assert _native.active() == before


def test_environment_variable_turns_the_kernel_off():
    env = {**os.environ, "CONVDROP_NATIVE": "0"}
    code = "from convdrop.ops import native; print(native.active(), native.status())"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, check=True).stdout.strip()
    assert out == "False fused CPU kernel off (disabled)"


def test_environment_values_are_checked():
    assert _native._from_environment(" Off ") is False
    assert _native._from_environment("yes") is True
    with pytest.raises(ValueError, match=r"CONVDROP_NATIVE must be one of .*; got 'maybe'"):
        _native._from_environment("maybe")


@pytest.mark.parametrize("args,message", [
    ((0, 0, 0, 0, 2, 1, 1, 0, (1, 4, 4), (1, 2, 2), 0, 0, 1.0, 1), "dtype code"),
    ((0, 0, 0, 0, 0, 1, 1, 0, (1, 4, 4), (1, 5, 2), 0, 0, 1.0, 1), "does not fit map side"),
    ((0, 0, 0, 0, 0, 3, 2, 1, (1, 4, 4), (1, 2, 2), 0, 0, 1.0, 1), "multiple of channels"),
])
def test_kernel_rejects_bad_arguments(args, message):
    with pytest.raises(ValueError, match=message):
        _native._kernel.apply(*args)


def _kernel_apply(x: torch.Tensor, out: torch.Tensor, maps: int, seeds: torch.Tensor,
                  shared: int = 0, channels: int = 1) -> None:
    """Call the kernel on 4x4 maps with block 2 (9 corners per map)."""
    _native._kernel.apply(x.data_ptr(), x.numel(), out.data_ptr(), out.numel(), 0, maps,
                          channels, shared, (1, 4, 4), (1, 2, 2), seeds.data_ptr(),
                          seeds.numel(), 1.0, 1)


@pytest.mark.parametrize("seeds,message", [
    ([0, 27], r"seed ids must lie in \[0, 27\), got 0 .. 27"),  # one past 3 maps x 9 corners
    ([-1, 3], r"must lie in \[0, 27\), got -1"),
    ([5, 2, 26], r"seeds must be sorted: id 2 follows 5"),
])
def test_kernel_refuses_seeds_out_of_range_before_writing(seeds, message):
    x, out = torch.ones(3, 16), torch.full((3, 16), 7.0)
    ids = torch.tensor(seeds, dtype=torch.int64)
    with pytest.raises(ValueError, match=message):
        _kernel_apply(x, out, 3, ids)
    with pytest.raises(ValueError, match=message):
        _native._kernel.count(ids.data_ptr(), ids.numel(), 3, (1, 4, 4), (1, 2, 2), 1)
    assert (out == 7.0).all()  # nothing written


def test_kernel_refuses_buffers_smaller_than_the_maps():
    x, out = torch.ones(2, 16), torch.ones(3, 16)
    ids = torch.tensor([0], dtype=torch.int64)
    with pytest.raises(ValueError, match=r"3 maps of 16 units do not fit buffers of 32 and 48"):
        _kernel_apply(x, out, 3, ids)
    _kernel_apply(out, out, 3, torch.tensor([8], dtype=torch.int64), shared=1, channels=3)
    assert int((out == 0).sum()) == 12  # one sample's 3 channels, a 2x2 block each


def test_statistics_match_the_pytorch_path():
    """Same seeds, same bits, so same statistics: the dropped fraction over 10 draws is p
    within 2 % relative on 1.6M units per draw (s.e. about 0.4 %)."""
    x = torch.ones(64, 128, 14, 14)
    fractions = []
    for seed, fused in itertools.product(range(5), (True, False)):
        with nullcontext() if fused else _native.disabled():
            fractions.append(float((drop_block(x, 0.1, 7, generator=gen(seed)) == 0)
                                   .float().mean()))
    assert fractions[0::2] == fractions[1::2]
    assert sum(fractions) / len(fractions) == pytest.approx(0.1, rel=0.02)
