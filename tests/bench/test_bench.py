"""The benchmark's measurements and table (timings themselves are never asserted)."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from convdrop.bench import model as bench_model
from convdrop.bench import ops as bench
from convdrop.bench import peers
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
        "| the same, DropBlock p=0.1 (12 sites, per channel)",
        "| its 12 DropBlock layers alone, replayed"]
    assert all(float(row[1]) > 0 for row in rows)


def test_paired_overhead_is_the_median_ratio():
    base = iter([10.0, 10.0, 20.0, 10.0, 10.0]).__next__  # the first round warms up
    other = iter([99.0, 11.0, 22.0, 12.0, 11.0]).__next__
    timed = bench_model._paired_overhead({"base": base, "other": other}, 4)
    assert timed["base"] == (10.0, 0.0)
    assert timed["other"][0] == 11.5
    assert timed["other"][1] == pytest.approx(0.1)  # ratios 1.1, 1.1, 1.2, 1.1


def test_cuda_setting_is_the_resnet50_step_with_timm_beside_it():
    """The CUDA table (ResNet-50, 36 sites, bf16 autocast, channels_last, timm's 9 sites),
    run here on the CPU at 32x32 with a batch of 2 so the code path is checked."""
    assert bench_model.step_setup("cuda", quick=False) == bench_model.CUDA_STEP
    assert bench_model.CUDA_STEP.batch == 128 and bench_model.CUDA_STEP.image == 224
    assert bench_model.step_setup("cpu", quick=False) == bench_model.CPU_STEP
    tiny = replace(bench_model.CUDA_STEP, image=32, batch=2, classes=10)
    text = bench_model.model_overhead(quick=True, device="cpu", repeats=1, setup=tiny)
    assert "ResNet-50 training step, batch 2, 32x32, bfloat16 autocast, channels_last" in text
    assert "DropBlock p=0.1 (36 sites, per channel)" in text
    assert "its 36 DropBlock layers alone" in text
    assert "timm resnet50, drop_block_rate=0.1 (9 shared-mask sites)" in text


def test_torchvision_and_timm_peers_run_in_the_projects_environment():
    pytest.importorskip("torchvision.ops")
    pytest.importorskip("timm.layers")
    x = torch.ones(2, 4, 14, 14)
    ops = peers.peer_ops(0.1, 7)
    for name in ("torchvision drop_block2d", "timm drop_block_2d (per channel)"):
        assert callable(ops[name]), ops[name]  # not "missing (...)"
        assert ops[name](x).shape == x.shape
