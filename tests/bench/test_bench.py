"""The benchmark's measurements and table (timings themselves are never asserted)."""

from __future__ import annotations

import pytest
import torch

from convdrop.bench import model as bench_model
from convdrop.bench import ops as bench
from convdrop.ops.functional import drop_block


def test_saved_bytes_counts_what_autograd_keeps():
    x = torch.randn(8, 64, 14, 14, requires_grad=True)
    in_bytes = x.numel() * 4
    assert bench.saved_bytes(lambda t: t * 1.1, x) == 0
    assert bench.saved_bytes(lambda t: t * torch.rand_like(t), x) == in_bytes  # a float mask
    assert 0 < bench.saved_bytes(lambda t: drop_block(t, 0.1, 7), x) <= 0.02 * in_bytes


def test_bench_shape_rows_and_render():
    rows = bench.bench_shape((2, 16, 14, 14), 0.1, 7, repeats=1, device="cpu")
    by_name = {row.name: row for row in rows}
    assert by_name["floor x*scalar"].floor_multiple == by_name["floor x*scalar"].best_multiple == 1
    assert all(row.best_multiple > 0 for row in rows if row.ms is not None)
    for name in ("convdrop drop_block", "convdrop drop_block, PyTorch path"):
        ours = by_name[name]
        assert ours.ms > 0 and ours.saved_fraction <= 0.02 and 0 < ours.dropped < 0.3
    assert by_name["F.dropout"].saved_fraction >= 0.25  # at least a bool mask per unit
    text = bench.render((2, 16, 14, 14), rows)
    assert text.startswith("### 2x16x14x14") and "| convdrop drop_block |" in text
    for row in rows:  # a missing peer is a row saying so, never an error
        assert row.ms is not None or row.note.startswith(("missing", "failed"))


def test_model_overhead_table_has_every_figure():
    text = bench_model.model_overhead(quick=True, device="cpu", repeats=1)
    rows = [line.split(" | ") for line in text.splitlines() if line.startswith("| ")][1:]
    assert [row[0] for row in rows] == [
        "| resnet18_cifar, DropBlock layers at p=0", "| the same at p=0 again (noise check)",
        "| the same, DropBlock p=0.1 (groups 3-4)", "| its 12 DropBlock layers alone, replayed"]
    assert all(float(row[1]) > 0 for row in rows)


def test_paired_overhead_is_the_median_ratio():
    base = iter([10.0, 10.0, 20.0, 10.0, 10.0]).__next__  # the first round warms up
    other = iter([99.0, 11.0, 22.0, 12.0, 11.0]).__next__
    timed = bench_model._paired_overhead({"base": base, "other": other}, 4)
    assert timed["base"] == (10.0, 0.0)
    assert timed["other"][0] == 11.5
    assert timed["other"][1] == pytest.approx(0.1)  # ratios 1.1, 1.1, 1.2, 1.1
