"""Registered ops and the backend switch: ``torch.compile(fullgraph=True)`` traces models
with DropBlock sites without graph breaks, and without recompiles when a scheduler changes
``p``; ``torch.export`` works in train and eval mode, the ops pass
``torch.library.opcheck``, and ``CONVDROP_BACKEND`` is checked."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
import torch._dynamo
from torch import nn
from torch._dynamo.utils import counters

from convdrop import DropBlock2d, Dropout, DropPath, SpatialDropout, drop_block
from convdrop.ops import device as generic
from convdrop.ops import dispatch as _dispatch
from convdrop.ops import native as _native
from convdrop.ops import registry as _ops
from convdrop.ops.autograd import DropBlockFunction
from convdrop.ops.gamma import drop_seed_rate
from convdrop.ops.sampling import Geometry, sample_seeds

BACKENDS = ["auto", "torch-generic"]  # the CPU op (sampler + kernel) and the generic op


def small_cnn() -> nn.Sequential:
    """Three DropBlock2d sites: per channel, shared, and "expected" scaling."""
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), DropBlock2d(0.1, 3), nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1), DropBlock2d(0.1, 3, shared_channels=True), nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1), DropBlock2d(0.2, 5, scale="expected"),
        nn.Flatten(), nn.Linear(8 * 12 * 12, 4),
    )


@pytest.fixture(autouse=True)
def fresh_dynamo():
    torch._dynamo.reset()
    counters.clear()
    yield
    torch._dynamo.reset()


@pytest.mark.parametrize("backend", BACKENDS)
def test_compile_fullgraph_train_and_eval_without_breaks_or_recompiles(backend):
    """Train, eval, train again: two graphs (one per mode), none per call."""
    with _native.forced(backend):
        model = small_cnn()
        compiled = torch.compile(model, fullgraph=True)
        x = torch.randn(4, 3, 12, 12)
        for _ in range(3):
            compiled(x).sum().backward()
        model.eval()
        assert torch.equal(compiled(x), model(x))  # eval: the sites are identities
        compiled(x)
        model.train()
        compiled(x).sum().backward()
        assert dict(counters["graph_break"]) == {}
        assert counters["stats"]["unique_graphs"] == 2
        assert model[0].weight.grad is not None


@pytest.mark.parametrize("backend", BACKENDS)
def test_explain_counts_no_graph_break(backend):
    with _native.forced(backend):
        explained = torch._dynamo.explain(small_cnn())(torch.randn(2, 3, 12, 12))
    assert explained.graph_break_count == 0 and explained.graph_count == 1


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_new_batch_size_compiles_once_then_is_dynamic(backend):
    with _native.forced(backend):
        model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), DropBlock2d(0.1, 3),
                              DropBlock2d(0.1, 3, shared_channels=True))
        compiled = torch.compile(model, fullgraph=True)
        for n in (4, 6, 8, 5):
            y = compiled(torch.randn(n, 3, 10, 10))
            y.sum().backward()
            assert y.shape[0] == n and (y == 0).any()
    assert counters["stats"]["unique_graphs"] == 2 and dict(counters["graph_break"]) == {}


def dropped_fraction(y: torch.Tensor) -> float:
    return float((y == 0).float().mean())


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("layer,shape", [
    (lambda: DropBlock2d(0.1, 3), (8, 16, 16, 16)), (lambda: SpatialDropout(0.1), (8, 16, 8, 8)),
    (lambda: Dropout(0.1), (8, 16, 8, 8)), (lambda: DropPath(0.1), (256, 2, 4, 4)),
])
def test_a_scheduled_p_never_recompiles_and_the_graph_follows_it(backend, layer, shape):
    """A scheduler sets a new ``p`` every step: one graph, and each call drops at that p
    (p = 0 keeps everything, p = 1 drops everything, in between within 8 SE of at least
    128 independent draws: maps, channels, units or samples)."""
    torch.manual_seed(0)
    with _native.forced(backend):
        model = layer()
        compiled = torch.compile(model, fullgraph=True)
        x = torch.ones(shape, requires_grad=True)
        for p in (0.0, 0.05, 0.2, 0.5, 1.0, 0.3, 0.0, 0.7):
            model.p = p
            y = compiled(x)
            y.sum().backward()
            if p in (0.0, 1.0):
                assert dropped_fraction(y) == p
            else:
                assert abs(dropped_fraction(y) - p) < 8 * (p * (1 - p) / 128) ** 0.5
    assert counters["stats"]["unique_graphs"] == 1 and dict(counters["graph_break"]) == {}


@pytest.mark.parametrize("backend", BACKENDS)
def test_backward_uses_the_p_of_its_forward(backend):
    """p changed between forward and backward: the gradient still has the forward's
    zeros (the op keeps its own copy of p)."""
    torch.manual_seed(1)
    with _native.forced(backend):
        model = DropBlock2d(0.3, 3)
        compiled = torch.compile(model, fullgraph=True)
        x = torch.ones(4, 4, 12, 12, requires_grad=True)
        y = compiled(x)
        model.p = 0.9
        y.backward(torch.ones_like(y))
    assert 0 < dropped_fraction(y) < 0.6
    assert torch.equal(x.grad == 0, y == 0)


def test_a_float_argument_of_a_compiled_function_compiles_twice_at_most():
    """The compiler makes a changing float argument symbolic after one recompile; the
    functional op then takes it as a tensor."""
    compiled = torch.compile(lambda x, p: drop_block(x, p, 3), fullgraph=True)
    x = torch.ones(4, 8, 16, 16)
    torch.manual_seed(2)
    for p in (0.1, 0.2, 0.3, 0.0, 1.0, 0.4):
        assert abs(dropped_fraction(compiled(x, p)) - p) < 0.08
    assert counters["stats"]["unique_graphs"] <= 2


@pytest.mark.parametrize("bad", [torch.tensor([0.1]), torch.tensor(1), torch.tensor(0.1,
                                 device="meta")])
def test_a_tensor_p_must_be_a_0_dim_float_cpu_tensor(bad):
    with pytest.raises(ValueError, match="p as a tensor must be a 0-dim floating-point CPU"):
        drop_block(torch.ones(1, 1, 4, 4), bad, 2)


def test_a_tensor_p_is_read_and_checked_eagerly():
    x = torch.ones(2, 3, 8, 8)
    gen = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    assert torch.equal(drop_block(x, torch.tensor(0.25, dtype=torch.float64), 3, generator=gen()),
                       drop_block(x, 0.25, 3, generator=gen()))
    with pytest.raises(ValueError, match="p must be a probability in \\[0, 1\\], got 1.5"):
        drop_block(x, torch.tensor(1.5), 3)
    with pytest.raises(ValueError, match="p must be a probability"):
        _ops.drop_block_cpu(x, torch.tensor([1]), torch.tensor(-0.5, dtype=torch.float64),
                            [3, 3], False, "batch", True)


@pytest.mark.parametrize("backend", BACKENDS)
def test_export_in_train_and_eval_mode(backend):
    x = torch.randn(4, 3, 12, 12)
    with _native.forced(backend):
        trained = torch.export.export(small_cnn().train(), (x,))
        evaluated = torch.export.export(small_cnn().eval(), (x,))
    name = "drop_block_cpu" if backend == "auto" else "drop_block_generic"
    targets = [str(node.target) for node in trained.graph.nodes]
    assert sum(f"convdrop.{name}" in t for t in targets) == 3
    assert not any("convdrop" in str(node.target) for node in evaluated.graph.nodes)
    assert trained.module()(x).shape == (4, 4)


def test_cpu_op_gives_the_sampler_paths_bits():
    """The op seeds a private generator with ``seed``; the same ids through the eager
    autograd function give the same output and gradient bits."""
    x = torch.randn(3, 5, 14, 14, requires_grad=True)
    grad = torch.randn(3, 5, 14, 14)
    geometry = Geometry.of(tuple(x.shape), (7, 7), False)
    seed, p = torch.tensor([1234]), torch.tensor(0.1, dtype=torch.float64)
    out, factor = _ops.drop_block_cpu(x, seed, p, [7, 7], False, "batch", True)
    (grad_op,) = torch.autograd.grad(out, x, grad)
    gamma = drop_seed_rate((14, 14), (7, 7), 0.1, True)
    ids = sample_seeds(geometry.trials, gamma, generator=torch.Generator().manual_seed(1234))
    reference = DropBlockFunction.apply(x, ids, geometry, "batch", 0.1, False)
    (grad_ref,) = torch.autograd.grad(reference, x, grad)
    assert ids.numel() > 0 and torch.equal(out, reference) and torch.equal(grad_op, grad_ref)
    assert factor.dtype == torch.float64 and factor.dim() == 0


@pytest.mark.parametrize("shared,scale", [(False, "batch"), (True, "expected")])
def test_ops_pass_opcheck(shared, scale):
    x = torch.randn(2, 3, 9, 9, requires_grad=True)
    geometry = Geometry.of(tuple(x.shape), (3, 3), shared)
    draws = generic.draw_bits(geometry, torch.Generator().manual_seed(0), "cpu")
    p = torch.tensor(0.2, dtype=torch.float64)
    for calibrated in (True, False):
        torch.library.opcheck(_ops.drop_block_generic,
                              (x, draws, p, [3, 3], shared, scale, calibrated))
        torch.library.opcheck(_ops.drop_block_cpu,
                              (x, torch.tensor([7]), p, [3, 3], shared, scale, calibrated))


# --- the backend switch -----------------------------------------------------------

def run_python(code: str, **env: str) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items()
                   if k not in ("CONVDROP_BACKEND", "CONVDROP_NATIVE")}
    return subprocess.run([sys.executable, "-c", code], env={**environment, **env},
                          capture_output=True, text=True)


def test_backend_values_are_checked():
    assert _native._backend_from_environment(" Torch-Generic ") == "torch-generic"
    with pytest.raises(ValueError, match=r"CONVDROP_BACKEND must be one of auto, cpu-kernel, "
                                         r"torch, torch-generic, triton; got 'gpu'"):
        _native._backend_from_environment("gpu")
    with pytest.raises(ValueError, match="backend must be one of .*; got 'generic'"):
        with _native.forced("generic"):
            pass


def test_a_bad_environment_value_fails_on_first_use_with_one_clear_error():
    code = "import torch, convdrop; convdrop.drop_block(torch.ones(1, 1, 4, 4), 0.5, 2)"
    result = run_python(code, CONVDROP_BACKEND="cuda")
    assert result.returncode != 0
    assert ("NativeSettingError: CONVDROP_BACKEND must be one of auto, cpu-kernel, torch, "
            "torch-generic, triton; got 'cuda'") in result.stderr


@pytest.mark.parametrize("env,expected", [
    ({}, ("auto", "")), ({"CONVDROP_NATIVE": "0"}, ("torch", "")),
    ({"CONVDROP_NATIVE": "yes"}, ("auto", "")),
    ({"CONVDROP_BACKEND": "torch-generic", "CONVDROP_NATIVE": "0"}, ("torch-generic", "")),
    ({"CONVDROP_NATIVE": "2"}, ("", "CONVDROP_NATIVE must be one of 1, true, on, yes, 0, "
                                    "false, off, no; got '2'")),
])
def test_environment_selects_the_backend(monkeypatch, env, expected):
    """Read once at import (``_from_variables``); a subprocess above checks the real thing."""
    monkeypatch.delenv("CONVDROP_BACKEND", raising=False)
    monkeypatch.delenv("CONVDROP_NATIVE", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert _native._from_variables() == expected


def test_paths_by_device_and_backend(monkeypatch):
    cpu, meta, cuda = torch.device("cpu"), torch.device("meta"), torch.device("cuda")
    monkeypatch.setattr(_ops, "triton_available", lambda: False)
    with _native.forced("auto"):
        assert [_dispatch.path_for(d) for d in (cpu, meta, cuda)] == ["cpu", "generic", "generic"]
    with _native.forced("torch-generic"):
        assert _dispatch.path_for(cpu) == "generic"
    with _native.forced("triton"), pytest.raises(RuntimeError, match="CONVDROP_BACKEND=triton"):
        _dispatch.path_for(cuda)
    monkeypatch.setattr(_ops, "triton_available", lambda: True)
    with _native.forced("auto"):
        assert _dispatch.path_for(cuda) == "triton"
        assert _dispatch.path_for(cuda, 5) == "generic"  # the Triton kernel has no 3d maps
        assert "CUDA: Triton kernel" in _dispatch.backend_status()
    with _native.forced("torch"):
        assert _dispatch.path_for(cuda) == "generic"
    monkeypatch.setattr(_native, "_kernel", None)
    with _native.forced("cpu-kernel"), pytest.raises(RuntimeError, match="cpu-kernel"):
        _dispatch.path_for(cpu)


def test_backend_status_is_one_line():
    with _native.forced("torch-generic"):
        line = _dispatch.backend_status()
    assert line.startswith("backend torch-generic (CPU: generic path; CUDA: ") and "\n" not in line
