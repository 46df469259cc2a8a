"""The Triton DropBlock kernels, run on the CPU by Triton's interpreter.

Exact masks against a max-pool dilation of the same seeds, seeds against a direct
Philox re-draw, exact Binomial tests of the per-unit drop law, and the forward and
backward contract (factor, dtypes, layouts, no host sync). On a GPU machine the same
tests run on CUDA with ``TRITON_INTERPRET=0``. Compilation and timing: test_triton_gpu.
"""

from __future__ import annotations

import os

_PRIOR_INTERPRET = os.environ.get("TRITON_INTERPRET")
os.environ.setdefault("TRITON_INTERPRET", "1")  # before triton is imported

import importlib  # noqa: E402
import math  # noqa: E402
import sys  # noqa: E402
from collections.abc import Callable, Iterator  # noqa: E402
from contextlib import contextmanager  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

triton = pytest.importorskip("triton")
stats = pytest.importorskip("scipy.stats")
tl = triton.language

from convdrop.ops import triton_kernel as tdb  # noqa: E402
from convdrop.ops.gamma import clip_block, coverage_histogram, seed_rate  # noqa: E402

INTERPRETED = os.environ.get("TRITON_INTERPRET") == "1"
pytestmark = pytest.mark.skipif(
    not INTERPRETED and not torch.cuda.is_available(),
    reason="needs CUDA or TRITON_INTERPRET=1")
DEVICE = "cpu" if INTERPRETED else "cuda"
P_VALUE = 1e-7  # threshold of every exact test below
_GENERIC_SCAN = {"on": False}


@triton.jit
def _redraw(seed_ptr, out_ptr, count, BLOCK: tl.constexpr):
    """Philox words of counters 0..count-1, word-major per counter: (count, 4) int64."""
    offs = tl.arange(0, BLOCK)
    r0, r1, r2, r3 = tl.randint4x(tl.load(seed_ptr), offs)
    ok = offs < count
    for word, r in ((0, r0), (1, r1), (2, r2), (3, r3)):
        tl.store(out_ptr + offs * 4 + word, r.to(tl.int64), mask=ok)


if _PRIOR_INTERPRET is None:  # other test modules keep their environment
    del os.environ["TRITON_INTERPRET"]


def _gpu_decorated() -> list[tuple[object, str, object]]:
    """triton.language's own @jit helpers (tl.randint4x, tl.sum, ...) when they were
    decorated for the GPU: triton was imported before TRITON_INTERPRET was set (in a
    whole-suite run ``import convdrop`` imports it through torch.library)."""
    from triton.runtime.jit import JITFunction

    return [(module, name, value)
            for module_name, module in list(sys.modules.items())
            if module_name.startswith("triton.language") and module is not None
            for name, value in list(vars(module).items()) if isinstance(value, JITFunction)]


def _numpy_running_max(generic: Callable) -> Callable:
    """The interpreter runs a custom scan one element at a time in Python (~100 us
    each); for the kernel's max combine use numpy's running max, the same function.
    ``test_generic_scan_agrees`` checks the two agree."""

    def scan(self: object, inputs: list) -> list:
        if _GENERIC_SCAN["on"] or getattr(self.combine_fn, "fn", None) is not tdb._max.fn:
            return generic(self, inputs)
        (values,) = inputs
        return [self.to_tensor(np.maximum.accumulate(values.handle.data, axis=self.axis),
                               values.dtype)]

    return scan


@pytest.fixture(autouse=True, scope="module")
def interpreted_kernels() -> Iterator[None]:
    """Under TRITON_INTERPRET=1: the environment variable set while these tests run
    (interpreted kernels read it), triton's GPU-decorated helpers and this package's
    kernels swapped for interpreted twins, and everything put back afterwards."""
    if not INTERPRETED:
        yield
        return
    from triton.runtime.interpreter import InterpretedFunction, ScanOps

    prior = os.environ.get("TRITON_INTERPRET")
    os.environ["TRITON_INTERPRET"] = "1"
    swapped, twins = _gpu_decorated(), {}
    for module, name, fn in swapped:
        setattr(module, name, twins.setdefault(id(fn), InterpretedFunction(fn.fn)))
    reload = not isinstance(tdb._map_kernel, InterpretedFunction)
    if reload:  # imported earlier for the GPU: decorate again, interpreted
        importlib.reload(tdb)
    generic = ScanOps.generic_scan
    ScanOps.generic_scan = _numpy_running_max(generic)
    try:
        yield
    finally:
        ScanOps.generic_scan = generic
        for module, name, fn in swapped:
            setattr(module, name, fn)
        if prior is None:
            os.environ.pop("TRITON_INTERPRET", None)
        else:
            os.environ["TRITON_INTERPRET"] = prior
        if reload:
            importlib.reload(tdb)


def seed_of(i: int) -> torch.Tensor:
    return torch.tensor([i], dtype=torch.int64, device=DEVICE)


def dilate(seeds: torch.Tensor, shape: tuple[int, ...], block: tuple[int, ...],
           shared: bool) -> torch.Tensor:
    """Reference mask: a seed at corner c drops [c, c + k); bool (N, C, *spatial)."""
    spatial = shape[2:]
    k = clip_block(spatial, block)
    pad: list[int] = []
    for kk in reversed(k):
        pad += [kk - 1, kk - 1]
    grid = F.pad(seeds.float()[:, None], pad)
    pool = F.max_pool1d if len(spatial) == 1 else F.max_pool2d
    painted = pool(grid, kernel_size=k, stride=1) > 0
    return painted.view(shape[0], 1 if shared else shape[1], *spatial).expand(shape)


def test_seeds_are_philox_words_below_the_threshold():
    """Slot s is a seed iff word s % 4 of philox(seed, s // 4) < round(gamma * 2**32)."""
    shape, block, gamma = (2, 3, 7, 6), (3, 2), 0.3
    seeds = tdb.seed_map(shape, seed_of(11), gamma, block, False).reshape(-1)
    words = torch.empty(64, 4, dtype=torch.int64, device=DEVICE)
    _redraw[(1,)](seed_of(11), words, 64, BLOCK=64)
    expected = (words.reshape(-1) < round(gamma * 2**32))[: seeds.numel()]
    assert torch.equal(seeds, expected)


CASES = [  # (shape, block, shared)
    ((2, 3, 6, 6), (3, 3), False),  # odd
    ((2, 3, 6, 6), (2, 2), True),  # even, shared
    ((2, 2, 5, 7), (2, 3), False),  # rectangular
    ((1, 3, 5, 4), (5, 4), False),  # block == map: whole channels
    ((1, 3, 5, 4), (9, 9), True),  # clipped to the map
    ((2, 2, 5, 5), (1, 1), False),  # block 1: dropout
    ((2, 3, 9), (4,), False),  # 1d
    ((2, 3, 9), (3,), True),
    ((1, 2, 1, 8), (1, 3), False),  # one row
    ((1, 2, 70, 9), (5, 3), False),  # taller than a tile: halo rows
    ((1, 1, 2100), (9,), True),  # longer than a 1d tile
    ((1, 40, 8, 8), (3, 3), False),  # channels in two tiles, the second partial
    ((2, 40, 8, 8), (2, 2), True),
]


@pytest.mark.parametrize("shape, block, shared", CASES)
def test_mask_is_the_dilated_seed_map(shape, block, shared):
    for i, gamma in enumerate((0.05, 0.3)):
        seeds = tdb.seed_map(shape, seed_of(i), gamma, block, shared)
        got = tdb.mask(shape, seed_of(i), gamma, block, shared)
        assert got.dtype == torch.bool and got.shape == shape
        assert torch.equal(got, dilate(seeds, shape, block, shared))


@pytest.mark.skipif(not INTERPRETED, reason="interpreter only")
def test_generic_scan_agrees():
    shape = (1, 2, 6, 5)
    fast = tdb.mask(shape, seed_of(2), 0.2, (3, 2), False)
    _GENERIC_SCAN["on"] = True
    try:
        slow = tdb.mask(shape, seed_of(2), 0.2, (3, 2), False)
    finally:
        _GENERIC_SCAN["on"] = False
    assert torch.equal(fast, slow) and fast.any() and not fast.all()


def coverage(spatial: tuple[int, ...], block: tuple[int, ...]) -> np.ndarray:
    """m(u): valid corners whose block covers unit u, per unit of the map."""
    grid = np.ones((), dtype=np.int64)
    for s, k in zip(spatial, block):
        u = np.arange(s)
        grid = np.multiply.outer(grid, np.minimum(u, s - k) - np.maximum(0, u - k + 1) + 1)
    return grid


GEOMETRIES = [((1,), (3,)), ((5,), (2,)), ((1, 1), (3, 3)), ((2, 3), (2, 2)), ((4, 4), (3, 3)),
              ((6, 5), (3, 2)), ((6, 6), (7, 7))]


@pytest.mark.parametrize("p", [1e-6, 0.1, 0.999])
@pytest.mark.parametrize("spatial, block", GEOMETRIES)
def test_unit_drop_law_is_exact(spatial, block, p, monkeypatch):
    """Each unit drops with 1 - (1 - gamma) ** m(u); a map has no seed with
    (1 - gamma) ** positions. Exact Binomial tests over 4096 maps from two calls."""
    if INTERPRETED:  # few large programs: the interpreter is slow
        monkeypatch.setattr(tdb, "_LANES", 1 << 16)
    block = clip_block(spatial, block)
    gamma = seed_rate(spatial, block, p, True)
    masks = torch.cat([tdb.mask((2, 1024, *spatial), seed_of(100 + i), gamma, block, False)
                       for i in range(2)]).reshape(-1, *spatial)
    maps = masks.shape[0]
    law = 1.0 - np.exp(coverage(spatial, block) * math.log1p(-gamma))
    for hits, q in zip(masks.sum(0).reshape(-1).tolist(), law.reshape(-1)):
        assert stats.binomtest(hits, maps, q).pvalue > P_VALUE, (hits, maps, q)
    positions = math.prod(s - k + 1 for s, k in zip(spatial, block))
    empty = int((~masks.reshape(maps, -1).any(1)).sum())
    assert stats.binomtest(empty, maps, (1 - gamma) ** positions).pvalue > P_VALUE
    values, counts = coverage_histogram(spatial, block)  # the law averages to p
    assert abs(float((counts * (1 - (1 - gamma) ** values)).sum() / counts.sum()) - p) < 1e-9


def test_shared_channels_share_one_map_per_sample():
    m = tdb.mask((8, 5, 6, 6), seed_of(3), 0.2, (3, 3), True)
    assert torch.equal(m, m[:, :1].expand_as(m)) and m.any()
    assert not torch.equal(m[0], m[1])


def reference(x: torch.Tensor, dropped: torch.Tensor, scale: str, p: float) -> torch.Tensor:
    kept = int((~dropped).sum())
    f = 1.0 / (1.0 - p) if scale == "expected" else (x.numel() / kept if kept else 0.0)
    return torch.where(dropped, 0, x * torch.tensor(f, dtype=torch.float32, device=x.device))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
@pytest.mark.parametrize("scale", ["batch", "expected"])
def test_forward_backward_contract(dtype, scale):
    shape, block, gamma, p = (2, 3, 6, 7), (3, 2), 0.15, 0.3
    x = torch.randn(shape, dtype=torch.float64, device=DEVICE).to(dtype)
    dropped = tdb.mask(shape, seed_of(5), gamma, block, False)
    out, factor = tdb.forward(x, seed_of(5), gamma, block, False, scale, p)
    assert factor.dtype == torch.float32 and factor.dim() == 0 and out.dtype == dtype
    expected = x.numel() / int((~dropped).sum()) if scale == "batch" else 1 / (1 - p)
    assert float(factor) == pytest.approx(expected, rel=1e-6)
    same(out, reference(x, dropped, scale, p))
    grad = torch.randn(shape, dtype=torch.float64, device=DEVICE).to(dtype)
    grad_in = tdb.backward(grad, seed_of(5), gamma, block, False, factor)
    same(grad_in, torch.where(dropped, 0, grad * factor))


def same(got: torch.Tensor, want: torch.Tensor) -> None:
    """Bit-equal, except that the interpreter truncates float32 -> bfloat16 where the
    GPU rounds to nearest even: 1 ulp there, with zeros exactly where they should be."""
    if got.dtype == torch.bfloat16 and INTERPRETED:
        assert torch.equal(got == 0, want == 0)
        torch.testing.assert_close(got, want, rtol=2**-7, atol=0)
    else:
        assert torch.equal(got, want)


def test_one_d_and_shared_forward():
    x = torch.randn(3, 4, 11, device=DEVICE)
    for shared in (False, True):
        dropped = tdb.mask(x.shape, seed_of(8), 0.2, (3,), shared)
        out, _ = tdb.forward(x, seed_of(8), 0.2, (3,), shared, "batch", 0.4)
        assert torch.equal(out, reference(x, dropped, "batch", 0.4))


def test_channels_last_keeps_layout_and_mask():
    x = torch.randn(2, 5, 6, 6, device=DEVICE)
    xl = x.to(memory_format=torch.channels_last)
    out, factor = tdb.forward(x, seed_of(9), 0.1, (3, 3), False, "batch", 0.2)
    out_l, factor_l = tdb.forward(xl, seed_of(9), 0.1, (3, 3), False, "batch", 0.2)
    assert out_l.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(out, out_l) and torch.equal(factor, factor_l)
    grad = torch.randn_like(xl)
    grad_in = tdb.backward(grad, seed_of(9), 0.1, (3, 3), False, factor_l)
    assert grad_in.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(grad_in, tdb.backward(grad.contiguous(), seed_of(9), 0.1, (3, 3),
                                             False, factor))


def test_everything_dropped_gives_zeros_not_nan():
    x = torch.randn(2, 3, 5, 5, device=DEVICE)
    out, factor = tdb.forward(x, seed_of(1), 1.0, (2, 2), False, "batch", 0.9)
    assert float(factor) == 0.0 and torch.equal(out, torch.zeros_like(x))
    out, factor = tdb.forward(x, seed_of(1), 0.5, (2, 2), False, "expected", 1.0)
    assert float(factor) == 0.0 and torch.equal(out, torch.zeros_like(x))
    grad_in = tdb.backward(torch.ones_like(x), seed_of(1), 0.5, (2, 2), False, factor)
    assert torch.equal(grad_in, torch.zeros_like(x))


def test_nothing_dropped_at_gamma_zero():
    x = torch.randn(2, 3, 5, 5, device=DEVICE)
    out, factor = tdb.forward(x, seed_of(1), 0.0, (3, 3), False, "batch", 0.1)
    assert float(factor) == 1.0 and torch.equal(out, x)


def test_float16_batch_factor_saturates_instead_of_overflowing():
    """One kept unit of 90,000 at gamma just below 1: the factor 90,000 is above float16's
    65504, so it is held at 65504 (the CPU paths do the same)."""
    x = torch.ones(1, 1, 300, 300, device=DEVICE, dtype=torch.float16)
    for i in range(40):
        mask = tdb.mask(tuple(x.shape), seed_of(i), 0.99999, (1, 1), False)
        if int((~mask).sum()) == 1:
            out, factor = tdb.forward(x, seed_of(i), 0.99999, (1, 1), False, "batch", 0.99999)
            assert float(factor) == 65504.0 and float(out.max()) == 65504.0
            assert torch.isfinite(out).all()
            return
    pytest.fail("no seed kept exactly one unit")


def test_seeds_decide_the_mask():
    a = tdb.mask((4, 4, 8, 8), seed_of(21), 0.1, (3, 3), False)
    assert torch.equal(a, tdb.mask((4, 4, 8, 8), seed_of(21), 0.1, (3, 3), False))
    assert not torch.equal(a, tdb.mask((4, 4, 8, 8), seed_of(22), 0.1, (3, 3), False))


def test_three_d_is_left_to_the_generic_path():
    with pytest.raises(NotImplementedError):
        tdb.mask((1, 1, 3, 3, 3), seed_of(0), 0.1, (2, 2, 2), False)


@contextmanager
def no_host_sync() -> Iterator[None]:
    """Every way of reading a tensor's value on the host raises."""
    names = ["item", "tolist", "nonzero", "__bool__", "__int__", "__float__", "__index__"]
    saved = {name: getattr(torch.Tensor, name) for name in names}

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("host sync")

    try:
        for name in names:
            setattr(torch.Tensor, name, refuse)
        yield
    finally:
        for name, method in saved.items():
            setattr(torch.Tensor, name, method)


def test_no_host_sync():
    x = torch.randn(2, 3, 6, 6, device=DEVICE)
    with no_host_sync():
        out, factor = tdb.forward(x, seed_of(4), 0.2, (3, 3), False, "batch", 0.3)
        tdb.forward(x, seed_of(4), 0.2, (3, 3), True, "expected", 0.3)
        tdb.backward(torch.ones_like(x), seed_of(4), 0.2, (3, 3), False, factor)
        tdb.mask(x.shape, seed_of(4), 0.2, (3, 3), False)
    assert out.shape == x.shape


def test_wide_indices_give_the_same_results(monkeypatch):
    """The int64 index path (tensors past 2**30 units) draws the same seeds and mask."""
    x = torch.randn(2, 3, 7, 6, device=DEVICE)
    narrow = tdb.forward(x, seed_of(6), 0.2, (3, 2), False, "batch", 0.3)
    monkeypatch.setattr(tdb, "_INT32_LIMIT", 0)
    wide = tdb.forward(x, seed_of(6), 0.2, (3, 2), False, "batch", 0.3)
    assert torch.equal(narrow[0], wide[0]) and torch.equal(narrow[1], wide[1])
    assert torch.equal(tdb.backward(x, seed_of(6), 0.2, (3, 2), False, wide[1]),
                       torch.where(narrow[0] == 0, 0, x * narrow[1]))


@pytest.mark.parametrize("calibrated,scale", [(True, "batch"), (False, "expected")])
def test_registered_op_reads_p_and_solves_the_seed_rate(calibrated, scale):
    """``convdrop::drop_block_triton`` (its Python body; the op itself dispatches on CUDA
    only) reads the 0-dim CPU ``p``, solves the rate and gives the kernel's bits, forward
    and backward; a bad ``p`` is refused when read."""
    from convdrop.ops import registry as ops
    from convdrop.ops.gamma import drop_seed_rate

    shape, block, p = (2, 3, 9, 8), (3, 3), 0.2
    x = torch.randn(shape, device=DEVICE)
    gamma = drop_seed_rate(shape[2:], block, p, calibrated)
    rate = torch.tensor(p, dtype=torch.float64)
    out, factor = ops.drop_block_triton._init_fn(x, seed_of(9), rate, list(block), False,
                                                 scale, calibrated)
    want, want_factor = tdb.forward(x, seed_of(9), gamma, block, False, scale, p)
    assert torch.equal(out, want) and torch.equal(factor, want_factor)
    grad = torch.randn(shape, device=DEVICE)
    got = ops.drop_block_triton_backward._init_fn(grad, seed_of(9), rate, list(block), False,
                                                  calibrated, factor)
    assert torch.equal(got, tdb.backward(grad, seed_of(9), gamma, block, False, factor))
    with pytest.raises(ValueError, match="p must be a probability"):
        ops.drop_block_triton._init_fn(x, seed_of(9), torch.tensor(2.0), list(block), False,
                                       scale, calibrated)
