"""``convdrop bench``: DropBlock against the memory-bandwidth floor and the peers.

For each shape it times forward + backward of every op, as a multiple of
``x * scalar`` forward + backward measured in the same run (one read and one write
of the tensor each way; medians, and fastest calls), measures the bytes autograd
saves for backward with ``torch.autograd.graph.saved_tensors_hooks``, and the
fraction of units actually dropped. convdrop appears twice: as users get it (the
fused CPU kernel where it applies) and on its PyTorch-level path, which CUDA and
half types use. Peers that do not import are reported as missing.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from convdrop._tables import markdown_table
from convdrop.bench.peers import peer_ops
from convdrop.ops import native as _native
from convdrop.ops.functional import drop_block
from convdrop.ops.reference import reference_drop_block

FULL_SHAPES = ((32, 1024, 14, 14), (32, 2048, 7, 7), (128, 128, 16, 16))
QUICK_SHAPES = ((8, 256, 14, 14), (8, 512, 7, 7), (32, 64, 16, 16))

Op = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Row:
    """One op on one shape; ``ms`` is None when the op is missing or failed."""

    name: str
    ms: float | None  # median
    floor_multiple: float | None  # median ms / the floor's median ms
    best_multiple: float | None  # fastest ms / the floor's fastest ms
    saved_fraction: float | None
    dropped: float | None
    note: str = ""


def saved_bytes(op: Op, x: torch.Tensor) -> int:
    """Bytes of distinct storages autograd keeps for backward of ``op(x)``."""
    storages: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        if t.data_ptr() != x.data_ptr():  # the input itself is no extra memory
            storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        op(x)
    return sum(storages.values())


def time_round_robin(
    named: dict[str, Op], x: torch.Tensor, grad: torch.Tensor, repeats: int
) -> dict[str, tuple[float, float]]:
    """Median and fastest forward + backward milliseconds per op, interleaved each round.

    Interleaving spreads machine noise evenly over the ops, so the multiples of the
    floor stay fair on a busy machine. On a shared machine single calls sometimes take
    2-3x longer (the floor's 3 ms became 8 ms in about a third of the rounds of some
    runs); the fastest call is each op's cost without that interference.
    """
    def step(op: Op) -> None:
        x.grad = None
        op(x).backward(grad)

    samples: dict[str, list[float]] = {name: [] for name in named}
    for round_ in range(repeats + 2):
        for name, op in named.items():
            if x.is_cuda:
                torch.cuda.synchronize()
            start = time.perf_counter()
            step(op)
            if x.is_cuda:
                torch.cuda.synchronize()
            if round_ >= 2:  # two warm-up rounds
                samples[name].append((time.perf_counter() - start) * 1e3)
    return {name: (statistics.median(values), min(values)) for name, values in samples.items()}


def pytorch_path(p: float, block: int) -> Op:
    """convdrop's drop_block with the fused CPU kernel turned off."""
    def op(x: torch.Tensor) -> torch.Tensor:
        with _native.disabled():
            return drop_block(x, p, block)

    return op


def ops(p: float, block: int) -> dict[str, Op | str]:
    """Every row of the table: name -> op, or -> reason it is missing."""
    generator_free: dict[str, Op | str] = {
        "floor x*scalar": lambda x: x * 1.1,
        "convdrop drop_block": lambda x: drop_block(x, p, block),
        "convdrop shared_channels": lambda x: drop_block(x, p, block, shared_channels=True),
        "convdrop drop_block, PyTorch path": pytorch_path(p, block),
        "convdrop reference (dense)": lambda x: reference_drop_block(x, p, (block, block)),
        "F.dropout": lambda x: F.dropout(x, p, training=True),
        "F.dropout2d": lambda x: F.dropout2d(x, p, training=True),
    }
    return {**generator_free, **peer_ops(p, block)}


def bench_shape(shape: tuple[int, ...], p: float, block: int, repeats: int,
                device: str) -> list[Row]:
    """Measure every op on one shape; the first op is the floor."""
    torch.manual_seed(0)
    x = torch.randn(shape, device=device, requires_grad=True)
    grad = torch.randn(shape, device=device)
    in_bytes = x.numel() * x.element_size()
    working: dict[str, Op] = {}
    notes: dict[str, str] = {}
    table = ops(p, block)
    for name, op in table.items():
        if isinstance(op, str):
            notes[name] = op
            continue
        try:  # one untimed call: a peer that breaks on this shape is a finding, not a crash
            op(x).backward(grad)
            working[name] = op
        except Exception as err:
            notes[name] = f"failed: {type(err).__name__}: {err}"[:90]
    times = time_round_robin(working, x, grad, repeats)
    floor, floor_best = times["floor x*scalar"]
    rows = []
    for name in table:
        if name in notes:
            rows.append(Row(name, None, None, None, None, None, notes[name]))
            continue
        op = working[name]
        with torch.no_grad():
            dropped = float((op(x) == 0).float().mean())
        saved = saved_bytes(op, x) / in_bytes
        ms, best = times[name]
        rows.append(Row(name, ms, ms / floor, best / floor_best, saved, dropped))
    return rows


def render(shape: tuple[int, ...], rows: list[Row]) -> str:
    """A markdown table for one shape."""
    header = ("op", "fwd+bwd ms", "x floor", "x floor, fastest", "saved for backward", "dropped")
    cells = [[r.name, r.note, "", "", "", ""] if r.ms is None else
             [r.name, f"{r.ms:.2f}", f"{r.floor_multiple:.2f}", f"{r.best_multiple:.2f}",
              f"{r.saved_fraction:.2%}", f"{r.dropped:.3f}"] for r in rows]
    table = markdown_table(header, cells, [None] + ["right"] * 5)
    return f"### {'x'.join(map(str, shape))}\n\n{table}"
