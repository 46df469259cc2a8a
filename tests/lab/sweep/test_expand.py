"""Sweep specs: grid and zip expansion, names, the control point, budgets, presets, errors.

A fake drop-budget probe stands in for building models where the numbers don't matter,
so these tests train nothing and load no data (except the one real-probe test).
"""

from __future__ import annotations

import re

import pytest

from convdrop.errors import MissingFileError, SpecError
from convdrop.lab.spec.experiment import build_spec
from convdrop.lab.spec.methods import PLACEMENTS
from convdrop.lab.spec.to_toml import spec_to_toml
from convdrop.lab.sweep import presets as sweep_presets
from convdrop.lab.sweep.expand import budget_probe, build_sweep
from convdrop.lab.sweep.presets import SWEEP_PRESETS

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")  # what run folders accept (issue 16)
TINY = {"data": "synthetic", "train_size": 30, "epochs": 1, "seeds": 1, "workers": 1}


def fake_probe(spec, method):
    """Budget = p, as for a model whose every activation passes one site."""
    return spec.options_for(method).p or 0.0


def head_or_conv_probe(spec, method):
    """The head holds 1 % of the activations; every conv site sees all of them."""
    options = spec.options_for(method)
    share = 0.01 if options.placement == "head" else 1.0
    return (options.p or 0.0) * share


def sweep(**fields):
    return build_sweep(overrides=TINY, sweep_overrides=fields, probe=fake_probe)


def test_grid_is_every_combination_plus_the_control_first():
    s = sweep(p=[0, 0.1, 0.2], block_size=[3, 5])
    assert [pt.name for pt in s.points] == [
        "control", "dropblock_scheduled-p0.1-b3", "dropblock_scheduled-p0.2-b3",
        "dropblock_scheduled-p0.1-b5", "dropblock_scheduled-p0.2-b5"]
    assert s.spec.methods == [pt.name for pt in s.points]
    assert all(NAME.match(name) for name in s.spec.methods)
    options = s.spec.options_for("dropblock_scheduled-p0.2-b5")
    assert (options.base, options.p, options.block_size) == ("dropblock_scheduled", 0.2, 5)
    assert s.spec.options_for("control").base == "control"
    assert [pt.budget for pt in s.points] == [0.0, 0.1, 0.2, 0.1, 0.2]
    assert {pt.series_label for pt in s.points[1:]} == {"block 3", "block 5"}
    assert s.points[0].is_control and s.control is s.points[0]


def test_zip_pairs_the_lists_and_broadcasts_single_values():
    s = sweep(method="dropout", p=[0.1, 0.5], placement=["head", "every_conv"],
              schedule=["linear"], pairing="zip")
    assert [pt.name for pt in s.points[1:]] == ["dropout-p0.1-head-linear",
                                                "dropout-p0.5-every_conv-linear"]
    with pytest.raises(SpecError, match=r"pairing = 'zip' needs lists of one length"):
        sweep(p=[0.1, 0.2, 0.3], block_size=[3, 5], pairing="zip")


def test_control_keeps_batch_norm_and_can_be_left_out():
    s = sweep(method="batchnorm_dropblock", p=[0.1])
    assert s.spec.options_for("control").base == "batchnorm"
    s = sweep(p=[0.1], control=False)
    assert [pt.name for pt in s.points] == ["dropblock_scheduled-p0.1"] and s.control is None


def test_budget_sweep_solves_p_per_placement():
    s = build_sweep(overrides=TINY, probe=head_or_conv_probe, sweep_overrides={
        "method": "dropout", "budget": [0.001, 0.004], "placement": ["head", "every_conv"]})
    by_name = {pt.name: pt for pt in s.points}
    head, conv = by_name["dropout-budget0.004-head"], by_name["dropout-budget0.004-every_conv"]
    assert head.p == pytest.approx(0.4) and conv.p == pytest.approx(0.004)
    assert head.budget == pytest.approx(0.004) and conv.budget == pytest.approx(0.004)
    assert head.target_budget == 0.004
    with pytest.raises(SpecError, match=r"sweep.budget 0.02 needs p = 2 > 1 at placement head"):
        build_sweep(overrides=TINY, probe=head_or_conv_probe, sweep_overrides={
            "method": "dropout", "budget": [0.02], "placement": ["head"]})


def test_real_probe_measures_the_drop_budget_of_each_model():
    s = build_sweep(overrides=TINY, sweep_overrides={"method": "dropout", "p": [0.5],
                                                     "placement": ["head", "every_conv"]})
    budgets = {pt.placement: pt.budget for pt in s.points if not pt.is_control}
    assert 0 < budgets["head"] < 0.05 < budgets["every_conv"] <= 0.5
    assert budget_probe(s.spec, "control") == 0.0


@pytest.mark.parametrize("fields, message", [
    ({"p": [0.1, 1.5]}, r"sweep.p.1: input should be less than or equal to 1 \(got 1.5\)"),
    ({"method": "cutout", "p": [0.1]}, r"sweep.method must be a method with a drop rate.*"
                                       r"got 'cutout'$"),
    ({"method": "dropblok", "p": [0.1]}, r"got 'dropblok'; did you mean 'dropblock'\?$"),
    ({"method": "dropout", "p": [0.1], "block_size": [3]},
     r"sweep.block_size applies to DropBlock methods; method 'dropout'"),
    ({"p": [0.1], "placement": ["everywhere"]},
     r"sweep.placement 'everywhere' is not a placement: expected one of"),
    ({"p": [0.1], "budget": [0.01]}, r"give exactly one of p = \[...\] and budget"),
    ({"p": [0.1, 0.1]}, r"sweep.p lists a value twice: \[0.1, 0.1\]"),
    ({"p": [0]}, r"no point with p > 0"),
    ({"p": [0, 0.1], "control": False}, r"sweep.p holds 0, the control point"),
    ({"p": [0.1], "bloc_size": [3]}, r"sweep.bloc_size: unknown key; did you mean 'block_size'"),
    ({"p": [0.1], "placement": ["head"]},
     r"sweep setting 'dropblock_scheduled-p0.1-head': placement 'head' takes regularizer "
     r"'dropout'"),
])
def test_bad_sweeps_are_one_line_errors_naming_key_and_value(fields, message):
    probe = budget_probe if fields.get("placement") == ["head"] else fake_probe
    with pytest.raises(SpecError, match=message) as caught:
        build_sweep(overrides=TINY, sweep_overrides=fields, probe=probe)
    assert "\n" not in str(caught.value) and str(caught.value).startswith("sweep")
    assert "sweep.sweep" not in str(caught.value)


@pytest.mark.parametrize("line, message", [
    ('block_size = ["3"]', r"^sweep.block_size.0: input should be a valid integer \(got '3'\)$"),
    ('control = "yes"', r"^sweep.control: input should be a valid boolean \(got 'yes'\)$"),
    ('p = ["0.1"]', r"^sweep.p.0: input should be a valid number"),
    ('min_seeds = 2.0', r"^sweep.min_seeds: input should be a valid integer \(got 2.0\)$"),
])
def test_a_sweep_file_value_of_the_wrong_type_is_named_not_converted(tmp_path, line, message):
    path = tmp_path / "s.toml"
    path.write_text(f'[sweep]\np = [0.1]\n{line}\n' if not line.startswith("p =")
                    else f"[sweep]\n{line}\n")
    with pytest.raises(SpecError, match=message):
        build_sweep(spec_file=path, overrides=TINY, probe=fake_probe)


def test_spec_file_layers_and_its_errors(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text('[experiment]\nseeds = 4\ndata = "synthetic"\n'
                    '[sweep]\npreset = "dropout-dose"\np = [0.3]\n')
    s = build_sweep(spec_file=path, probe=fake_probe)
    assert s.spec.seeds == 4 and s.spec.name == "dropout-dose"
    assert [pt.p for pt in s.points] == [0.0] + [0.3] * (len(s.points) - 1)  # file p wins
    s = build_sweep(spec_file=path, overrides={"seeds": 2}, sweep_overrides={"p": [0.2]},
                    probe=fake_probe)
    assert s.spec.seeds == 2 and {pt.p for pt in s.points[1:]} == {0.2}  # flags win
    for text, message in [('[experiment]\nmethods = ["control"]\n', "experiment.methods"),
                          ('[methods.x]\nbase = "dropout"\n', r"unknown table\(s\) \['methods'\]"),
                          ("[sweep\n", "is not valid TOML"),
                          ('[experiment]\nepochs = 0\n[sweep]\np = [0.1]\n',
                           r"experiment.epochs: .* \(got 0\)")]:
        path.write_text(text)
        with pytest.raises(SpecError, match=message):
            build_sweep(spec_file=path, probe=fake_probe)
    with pytest.raises(MissingFileError, match="does not exist"):
        build_sweep(spec_file=tmp_path / "nope.toml")


@pytest.mark.parametrize("preset", sorted(SWEEP_PRESETS))
def test_presets_expand_with_the_placements_that_exist(preset, monkeypatch):
    s = build_sweep(preset=preset, overrides=TINY, probe=head_or_conv_probe)
    assert s.spec.name == preset and s.points[0].is_control and len(s.points) >= 9
    assert all(pt.placement in PLACEMENTS for pt in s.points if pt.placement)
    monkeypatch.setitem(PLACEMENTS, "stage_outputs", PLACEMENTS["every_conv"])  # issue 14's
    fields = sweep_presets.sweep_preset(preset)[1]
    assert "stage_outputs" in fields.get("placement", ["stage_outputs"])


@pytest.mark.parametrize(("fashion", "digits"), [
    ("fashion-dose", "dropblock-dose"),
    ("fashion-location-vs-magnitude", "location-vs-magnitude")])
def test_fashion_sweeps_are_the_digits_sweeps_on_fashion_mnist(fashion, digits):
    s, same = (build_sweep(preset=name, probe=head_or_conv_probe) for name in (fashion, digits))
    assert [pt.name for pt in s.points] == [pt.name for pt in same.points]
    assert (s.spec.data, s.spec.train_size, s.spec.epochs, s.spec.seeds) == (
        "fashion-mnist", 2000, 30, 3)


def test_default_is_the_dropblock_dose_preset():
    s = build_sweep(overrides=TINY, probe=fake_probe)
    assert s.spec.name == "dropblock-dose" and s.settings.block_size == [1, 3, 5]


def test_the_expanded_spec_round_trips_through_toml_with_the_same_run_keys(tmp_path):
    """What lets `convdrop train --spec OUT/sweep_spec.toml --method NAME` (torchrun) train a
    setting into the sweep's folder: the file rebuilds every run key."""
    s = build_sweep(overrides={**TINY, "model_options": {"width": 4}, "image_size": 16},
                    sweep_overrides={"method": "dropout", "p": [0.1, 0.25],
                                     "placement": ["head", "every_conv"]}, probe=fake_probe)
    path = tmp_path / "spec.toml"
    path.write_text(spec_to_toml(s.spec, header="a comment"))
    again = build_spec(spec_file=path)
    assert again.methods == s.spec.methods
    assert all(again.run_key(m) == s.spec.run_key(m) for m in s.spec.methods)


# --- large sweeps: counted before they are expanded, and probed per line ------------------


@pytest.mark.parametrize("fields", [
    {"p": [0, 0.1, 0.2], "block_size": [3, 5]},
    {"p": [0.1, 0.2], "block_size": [1, 3, 5], "schedule": ["linear", "constant"]},
    {"p": [0.1], "block_size": [3, 5], "pairing": "zip"},
    {"p": [0.1, 0.3, 0.5], "block_size": [3], "pairing": "zip", "control": False},
    {"method": "dropout", "budget": [0.001, 0.002], "placement": ["head", "every_conv"]},
])
def test_a_sweep_is_counted_as_it_expands(fields):
    s = build_sweep(overrides=TINY, sweep_overrides=fields, probe=head_or_conv_probe)
    assert s.settings.size() == len(s.points)


def test_a_sweep_above_max_runs_is_refused_before_it_is_expanded():
    def never(spec, method):
        raise AssertionError("expanded")

    rates = [round(k / 1001, 6) for k in range(1, 1001)]
    fields = {"p": rates, "block_size": list(range(1, 1001))}
    with pytest.raises(SpecError, match=r"^sweep: 1,000,001 settings x 1 seeds = 1,000,001 "
                       r"runs, more than the 1,000 allowed; shorten sweep.p, "
                       r"sweep.block_size, or allow them with --max-runs 1000001$"):
        build_sweep(overrides=TINY, sweep_overrides=fields, probe=never, max_runs=1000)
    small = build_sweep(overrides={**TINY, "seeds": 2}, sweep_overrides={"p": [0.1, 0.2]},
                        probe=fake_probe, max_runs=6)
    assert len(small.points) * small.spec.seeds == 6


def test_a_long_line_of_p_builds_three_models_not_one_per_point():
    """100 rates x 2 block sizes: 3 probes per block size and the control's, where each
    point was probed before (39 ms each on the audit's machine); budgets as each point's."""
    calls: list[str] = []

    def counted(spec, method):
        calls.append(method)
        return budget_probe(spec, method)

    rates = [round(k / 101, 6) for k in range(1, 101)]
    s = build_sweep(overrides={**TINY, "model_options": {"width": 4}},
                    sweep_overrides={"p": rates, "block_size": [1, 3]}, probe=counted)
    assert len(calls) == 1 + 2 * 3
    for point in (s.points[37], s.points[150]):
        assert point.budget == pytest.approx(budget_probe(s.spec, point.name), rel=1e-12)


def test_the_budget_probe_allocates_nothing():
    """A model far too large for any machine (width 100000: about 2e12 parameters) is
    measured on the meta device, so the preflight, not an allocation, refuses it."""
    s = build_sweep(overrides={**TINY, "model_options": {"width": 100000}},
                    sweep_overrides={"method": "dropout", "p": [0.1]}, probe=fake_probe)
    assert budget_probe(s.spec, "dropout-p0.1") > 0
