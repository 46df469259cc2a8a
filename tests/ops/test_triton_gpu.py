"""The Triton DropBlock kernels on the GPU side: compiled for sm_90 without a GPU (the
interpreter never lowers them), and timed against the ``x * 2`` floor where a GPU is
(``pytest -m slow -s tests/test_triton_gpu.py``)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

triton = pytest.importorskip("triton")

from convdrop.ops import triton_kernel as tdb  # noqa: E402
from convdrop.ops.gamma import clip_block, seed_rate  # noqa: E402

GPU = torch.cuda.is_available() and os.environ.get("TRITON_INTERPRET", "0") != "1"


_COMPILE = """
import sys, triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from convdrop.ops import triton_kernel as T
kernel, pointers, constexprs = eval(sys.argv[1])
fn = getattr(T, kernel)
sig = {p.name: "constexpr" if p.is_constexpr else pointers.get(p.name, "i32") for p in fn.params}
triton.compile(ASTSource(fn=fn, signature=sig, constexprs=constexprs),
               target=GPUTarget("cuda", 90, 32))
"""
_PTRS = {"bits_ptr": "*u8", "counter_ptr": "*i64", "factor_ptr": "*fp32", "seed_ptr": "*i64",
         "threshold": "i64", "factor_value": "fp32"}
_TILE = {"SHARED": False, "BC": 8, "MR": 8, "TH": 16, "TW": 16, "WIDE": False}
_VARIANTS = [
    ("_map_kernel", {**_PTRS, "src_ptr": "*fp16", "dst_ptr": "*fp16"},
     {**_TILE, "MODE": 1, "FACTOR": 0}),
    *[pytest.param(*v, marks=pytest.mark.slow) for v in [
        ("_seed_kernel", _PTRS, {"BLOCK": 1024, "ZERO_COUNTER": True, "WIDE": True}),
        ("_map_kernel", {**_PTRS, "src_ptr": "*fp32", "dst_ptr": "*u8"},
         {**_TILE, "MODE": 0, "FACTOR": 0, "SHARED": True, "BC": 1, "MR": 1}),
        ("_map_kernel", {**_PTRS, "src_ptr": "*bf16", "dst_ptr": "*bf16"},
         {**_TILE, "MODE": 1, "FACTOR": 1, "SHARED": True, "MR": 1, "WIDE": True}),
        ("_map_kernel", {**_PTRS, "src_ptr": "*fp64", "dst_ptr": "*fp64"},
         {**_TILE, "MODE": 1, "FACTOR": 2, "BC": 2, "MR": 2, "TH": 1, "TW": 1024}),
        ("_map_kernel", {**_PTRS, "src_ptr": "*u8", "dst_ptr": "*i1"},
         {**_TILE, "MODE": 2, "FACTOR": 2, "BC": 1, "MR": 1, "TH": 64, "TW": 64}),
    ]],
]


@pytest.mark.parametrize("kernel, pointers, constexprs", _VARIANTS)
def test_kernels_compile_for_hopper(kernel, pointers, constexprs, tmp_path):
    """The interpreter never lowers the kernels: compile them for sm_90 (no GPU needed)."""
    env = {**os.environ, "TRITON_INTERPRET": "0", "TRITON_CACHE_DIR": str(tmp_path)}
    src = os.path.dirname(os.path.dirname(os.path.abspath(__import__("convdrop").__file__)))
    env["PYTHONPATH"] = os.pathsep.join([src, *sys.path])
    run = subprocess.run([sys.executable, "-c", _COMPILE, repr((kernel, pointers, constexprs))],
                         env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]


@pytest.mark.slow
@pytest.mark.skipif(not GPU, reason="timing needs a GPU")
@pytest.mark.parametrize("shape", [(32, 1024, 14, 14), (32, 2048, 7, 7), (128, 128, 16, 16)])
def test_gpu_time_against_the_floor(shape):
    """forward + backward (fp32, p = 0.1, block 7, per channel) over ``x * 2`` twice."""
    x = torch.randn(shape, device="cuda")
    seed = torch.tensor([1], device="cuda")
    gamma = seed_rate(shape[2:], clip_block(shape[2:], (7, 7)), 0.1, True)

    def ours() -> None:
        out, factor = tdb.forward(x, seed, gamma, (7, 7), False, "batch", 0.1)
        tdb.backward(out, seed, gamma, (7, 7), False, factor)

    def floor() -> None:
        (x * 2) * 2

    times = {}
    for name, fn in (("ours", ours), ("floor", floor)):
        for _ in range(5):
            fn()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(50):
            fn()
        end.record()
        torch.cuda.synchronize()
        times[name] = start.elapsed_time(end) / 50
    ratio = times["ours"] / times["floor"]
    print(f"{shape}: {times['ours'] * 1e3:.1f} us, floor {times['floor'] * 1e3:.1f} us, "
          f"{ratio:.2f}x")
    assert ratio < 4.0
