"""convdrop.placement.rules and .attach: rules, regularize, checkpoints, sites, drop budget."""

from __future__ import annotations

import copy
import io
import math

import pytest
import torch
from torch import nn

import convdrop
from convdrop.placement.attach import regularize, unregularize
from convdrop.placement.budget import drop_budget, expected_fraction, sites
from convdrop.placement.rules import Rule


class Net(nn.Module):
    """Two stages (an nn.Sequential each, like torchvision) and a dense head."""

    def __init__(self) -> None:
        super().__init__()
        self.layer1 = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU())
        self.layer2 = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU())
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(4 * 8 * 8, 5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.layer2(self.layer1(x)))


def _net(seed: int = 0) -> Net:
    torch.manual_seed(seed)
    return Net()


X = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))
RULES = [Rule("dropblock", 0.1, block_size=3),
         Rule("dropout", 0.5, types=(nn.Linear,), position="before")]


def test_regularize_inserts_fresh_visible_sites_and_keeps_state_dict_keys():
    net = _net()
    checkpoint = copy.deepcopy(net.state_dict())
    assert regularize(net, RULES) is net
    added = {p: m for p, m in net.named_modules() if isinstance(m, convdrop.Regularizer)}
    assert sorted(added) == ["head.1.pre_dropout", "layer1.0.dropblock", "layer2.0.dropblock"]
    assert len({id(m) for m in added.values()}) == 3  # no instance reused at two sites
    assert list(net.state_dict()) == list(checkpoint)
    net.load_state_dict(checkpoint, strict=True)
    net.eval()
    assert torch.equal(net(X), _net().eval()(X))  # sites are identities in eval mode


def test_sites_act_in_training_after_and_before():
    net = regularize(_net(), Rule("dropout", 1.0, types=(nn.Linear,), position="before"))
    out = net.train()(X)
    assert torch.equal(out, net.head[1].bias.expand(2, 5))  # Linear saw only zeros
    after = regularize(_net(), Rule("spatial_dropout", 1.0, match="layer2.*"))
    assert torch.count_nonzero(after.layer2(after.layer1(X))) == 0  # ReLU(BN(0)) is 0 here
    assert torch.count_nonzero(after.layer2[0](torch.ones(1, 4, 3, 3))) == 0


def test_applying_the_same_rules_twice_adds_nothing():
    net = regularize(_net(), RULES)
    modules = [p for p, _ in net.named_modules()]
    hooks = sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in net.modules())
    regularize(net, RULES)
    regularize(net, [*RULES, *RULES])
    assert [p for p, _ in net.named_modules()] == modules
    assert sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in net.modules()) == hooks


def test_match_types_and_dimensionality():
    net = regularize(_net(), Rule("dropblock", 0.2, match="layer2.*",
                                  types=(nn.BatchNorm2d, nn.ReLU)))
    found = {s.path: s for s in sites(net)}
    assert sorted(found) == ["layer2.1.dropblock", "layer2.2.dropblock"]
    assert found["layer2.1.dropblock"].block_size == 7  # the default, clipped by the op
    line = regularize(nn.Sequential(nn.Conv1d(2, 2, 3)), Rule("dropblock", 0.1, types=nn.Conv1d))
    assert isinstance(line[0].dropblock, convdrop.DropBlock1d)


def test_a_container_target_is_hosted_by_its_parent():
    net = regularize(_net(), Rule("dropblock", 0.1, block_size=2, match="layer1",
                                  types=(nn.Sequential,)))
    assert isinstance(net.layer1_dropblock, convdrop.DropBlock2d)
    assert net.train()(X).shape == (2, 5)  # the Sequential did not run it as a layer
    flat = nn.Sequential(nn.Sequential(nn.Conv2d(3, 3, 1)))
    with pytest.raises(ValueError, match="no enclosing module"):
        regularize(flat, Rule("dropout", 0.1, types=(nn.Sequential,)))


def test_factories_copies_pickles_and_unregularize():
    net = regularize(_net(), Rule(nn.Dropout, 0.3, types=(nn.Linear,), position="before"))
    assert sites(net)[0].kind == "dropout" and sites(net)[0].path == "head.1.pre_dropout"
    clone = copy.deepcopy(net)
    clone.head[1].pre_dropout.p = 1.0  # the clone's hook must call the clone's module
    assert torch.equal(clone.train()(X), clone.head[1].bias.expand(2, 5))
    assert not torch.equal(net.train()(X), net.head[1].bias.expand(2, 5))
    buffer = io.BytesIO()
    torch.save(net, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    assert torch.equal(loaded.eval()(X), net.eval()(X))
    unregularize(net)
    assert [p for p, _ in net.named_modules()] == [p for p, _ in _net().named_modules()]
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in net.modules())


def test_compiled_regularized_model_runs():
    net = regularize(_net(), [Rule("spatial_dropout", 0.1), RULES[1]])
    out = torch.compile(net, backend="eager")(X)
    out.sum().backward()
    assert out.shape == (2, 5) and torch.isfinite(net.layer1[0].weight.grad).all()


@pytest.mark.parametrize(("make", "words"), [
    (lambda: Rule("dropblock", 1.5), ["p", "1.5", "[0, 1]"]),
    (lambda: Rule("dropconnect", 0.1), ["regularizer", "'dropconnect'"]),
    (lambda: Rule("dropout", 0.1, block_size=3), ["block_size", "dropblock"]),
    (lambda: Rule("dropblock", 0.1, block_size=0), ["block_size", "0"]),
    (lambda: Rule("dropout", 0.1, position="inside"), ["position", "'inside'"]),
    (lambda: Rule("dropout", 0.1, types=(int,)), ["types"]),
    (lambda: regularize(_net(), Rule("dropout", 0.1, match="layer9.*")), ["'layer9.*'", "Rule("]),
    (lambda: regularize(_net(), [RULES[0], Rule("dropout", 0.1, types=(nn.LSTM,))]),
     ["LSTM", "matches no module"]),
    (lambda: regularize(_net(), Rule(lambda p: nn.Linear(2, 2), 0.1)), ["parameters"]),
    (lambda: regularize(_net(), Rule(lambda p: 3, 0.1)), ["nn.Module", "int"]),
    (lambda: regularize(_net(), []), ["non-empty"]),
])
def test_errors_name_the_rule_or_value(make, words):
    with pytest.raises(ValueError) as err:
        make()
    assert all(w in str(err.value) for w in words)


def test_a_failing_rule_changes_nothing():
    net = _net()
    with pytest.raises(ValueError):
        regularize(net, [RULES[0], Rule("dropout", 0.1, match="nowhere")])
    assert not sites(net)


def test_sites_report_kind_rate_block_and_map_shape():
    net = regularize(_net(), RULES)
    plain = {s.path: s for s in sites(net)}
    assert all(s.map_shape is None for s in plain.values())
    net.train()
    net.layer2.eval()  # mixed modes must survive the example forward
    shaped = {s.path: s for s in sites(net, X)}
    assert shaped["layer1.0.dropblock"].map_shape == (2, 4, 8, 8)
    assert shaped["head.1.pre_dropout"].map_shape == (2, 256)
    assert shaped["head.1.pre_dropout"].position == "before"
    assert shaped["layer2.0.dropblock"].target == "layer2.0"
    assert (shaped["layer2.0.dropblock"].kind, shaped["layer2.0.dropblock"].p) == ("dropblock", 0.1)
    assert net.training and not net.layer2.training and net.layer1.training


def test_drop_budget_is_the_expected_dropped_fraction_of_conv_and_linear_outputs():
    net = regularize(_net(), RULES)
    conv_outputs, linear_outputs = 2 * (2 * 4 * 8 * 8), 2 * 5  # denominator: 1034
    denominator = conv_outputs + linear_outputs
    budget = drop_budget(net, X)
    assert budget["layer1"] == pytest.approx(0.1 * 512 / denominator, rel=1e-12)
    assert budget["layer2"] == pytest.approx(0.1 * 512 / denominator, rel=1e-12)
    assert budget["head"] == pytest.approx(0.5 * 512 / denominator, rel=1e-12)
    assert budget["total"] == pytest.approx(sum(budget[k] for k in ("layer1", "layer2", "head")))


def test_budget_compares_location_and_magnitude():
    """0.9 in the head only vs 0.001 after every conv: the budget puts them on one scale."""
    head = regularize(_net(), Rule("dropout", 0.9, types=(nn.Linear,), position="before"))
    everywhere = regularize(_net(), Rule("dropout", 0.001))
    assert drop_budget(head, X)["total"] == pytest.approx(0.9 * 512 / 1034)
    assert drop_budget(everywhere, X)["total"] == pytest.approx(0.001 * 1024 / 1034)
    with pytest.raises(ValueError, match="no Conv or Linear"):
        drop_budget(nn.Sequential(nn.ReLU()), X)


def test_built_in_and_torch_dropouts_are_sites():
    model = nn.Sequential(nn.Conv2d(3, 2, 1), nn.Dropout2d(0.2), convdrop.DropBlock2d(0.1, 3))
    found = sites(model, X)
    assert [(s.path, s.kind, s.p, s.target) for s in found] == [
        ("1", "spatial_dropout", 0.2, None), ("2", "dropblock", 0.1, None)]
    assert drop_budget(model, X)["total"] == pytest.approx(0.3)


def test_expected_fraction_of_uncalibrated_dropblock_matches_sampling():
    """Paper gamma on 8x8 maps, block 3, p = 0.2: seeded 2048 maps, tolerance 0.01."""
    layer = convdrop.DropBlock2d(0.2, 3, calibrated=False)
    exact = expected_fraction(layer, (64, 32, 8, 8))
    assert not math.isclose(exact, 0.2, abs_tol=0.01)  # the paper's rate is not p here
    mask = convdrop.block_mask((64, 32, 8, 8), 0.2, 3, calibrated=False,
                               generator=torch.Generator().manual_seed(0))
    assert mask.float().mean().item() == pytest.approx(exact, abs=0.01)
    assert expected_fraction(convdrop.DropBlock2d(0.2, 3), (1, 1, 8, 8)) == 0.2
