"""Spec layering and validation: presets < TOML file < flags, with clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from convdrop.errors import MissingFileError, SpecError
from convdrop.lab.spec.experiment import build_spec
from convdrop.lab.spec.presets import PRESETS, describe_presets, preset_fields


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "spec.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_default_is_the_regularizers_preset():
    spec = build_spec()
    assert spec.name == "regularizers" and spec.data == "digits"
    assert spec.methods[0] == "control" and "dropblock_scheduled" in spec.methods


def test_every_preset_builds():
    for name in PRESETS:
        spec = build_spec(preset=name)
        assert spec.name == name and spec.methods
    assert "placement" in describe_presets()


def test_file_overrides_preset_and_flags_override_file(tmp_path):
    path = write(tmp_path, """
[experiment]
preset = "schedule"
methods = ["control", "dropblock_scheduled"]
seeds = 2
epochs = 4
data = "synthetic"
train_size = 60
[methods.dropblock_scheduled]
p = 0.2
block_size = 5
""")
    spec = build_spec(spec_file=path, overrides={"epochs": 2, "seeds": None})
    assert spec.name == "schedule" and spec.epochs == 2 and spec.seeds == 2
    assert spec.options_for("dropblock_scheduled").p == 0.2
    assert spec.options_for("dropblock_scheduled").block_size == 5
    assert spec.options_for("control").p is None


def test_variant_needs_a_base(tmp_path):
    path = write(tmp_path, """
[experiment]
methods = ["control", "dropout_p30"]
[methods.dropout_p30]
base = "dropout"
p = 0.3
""")
    assert build_spec(spec_file=path).options_for("dropout_p30").base == "dropout"


@pytest.mark.parametrize("text,match", [
    ('[experiment]\nmethods = ["control", "magic"]', r"unknown method 'magic'"),
    ('[experiment]\nepoch = 3', r"experiment.epoch: unknown key; did you mean 'epochs'\?"),
    ('[experiment]\nepochs = 0', r"experiment.epochs: .*greater than or equal to 1 .*got 0"),
    ('[methods.dropout]\np = 1.5', r"methods.dropout.p: .*less than or equal to 1 \(got 1.5\)"),
    ('[methods.dropout]\nblock = 3',
     r"methods.dropout.block: unknown key; did you mean 'block_size'\?"),
    ('[experiment]\noptimizer = "lbfgs"',
     r"experiment.optimizer: .*'sgd' or 'adamw' \(got 'lbfgs'\)$"),
    ('[training]\nlr = 1', r"unknown table\(s\) \['training'\]"),
    ('[experiment\n', r"is not valid TOML"),
    ('[experiment]\nmethods = ["control", "control"]', r"listed twice"),
    # strict types: a TOML value of the wrong type is named, never converted (issue 27)
    ('[experiment]\nseeds = "3"', r"^experiment.seeds: input should be a valid integer "
                                  r"\(got '3'\)$"),
    ('[experiment]\nepochs = true', r"^experiment.epochs: input should be a valid integer"),
    ('[experiment]\nchannels_last = "yes"', r"^experiment.channels_last: input should be a "
                                            r"valid boolean \(got 'yes'\)$"),
    ('[experiment]\nlr = "0.1"', r"^experiment.lr: input should be a valid number"),
    ('[methods.dropblock]\nblock_size = ["3"]', r"^methods.dropblock.block_size: input should "
                                               r"be a valid integer \(got \['3'\]\)$"),
    ('[methods.dropblock]\nblock_size = "3"', r"^methods.dropblock.block_size: input should "
                                             r"be a valid integer \(got '3'\)$"),
])
def test_bad_specs_name_the_key_and_value(tmp_path, text, match):
    with pytest.raises(SpecError, match=match):  # a ValueError, for library callers
        build_spec(spec_file=write(tmp_path, text))


def test_missing_spec_file_and_unknown_preset(tmp_path):
    with pytest.raises(MissingFileError, match="spec file .*nope.toml"):
        build_spec(spec_file=tmp_path / "nope.toml")
    assert issubclass(MissingFileError, FileNotFoundError) and issubclass(SpecError, ValueError)
    with pytest.raises(SpecError, match=r"unknown preset 'big'"):
        preset_fields("big")


def test_run_key_ignores_seeds_but_not_settings_or_workers():
    a = build_spec(overrides={"seeds": 2, "workers": 1})
    b = build_spec(overrides={"seeds": 5, "workers": 1})
    c = build_spec(overrides={"epochs": 3, "workers": 1})
    assert a.run_key("dropout") == b.run_key("dropout")
    assert a.run_key("dropout") != c.run_key("dropout")
    assert a.run_key("dropout") != a.run_key("control")
    # Each worker computes with fewer CPU threads, which changes the float sums.
    assert a.run_key("dropout") != build_spec(overrides={"workers": 2}).run_key("dropout")


@pytest.mark.parametrize("data", ["fashion-mnist", "Fashion-MNIST:/srv/fm"])
def test_fashion_mnist_starts_from_a_recipe_whose_control_overfits(data):
    spec = build_spec(overrides={"data": data})
    assert (spec.train_size, spec.epochs, spec.augment, spec.workers) == (2000, 30, "none", 2)
    assert spec.model_options == {"width": 16} and spec.batch_size == 64  # the spec's batch
    resnet = build_spec(overrides={"data": data, "model": "resnet18_cifar", "epochs": 3})
    assert resnet.model_options == {} and resnet.epochs == 3 and resnet.train_size == 2000


@pytest.mark.parametrize(("fashion", "digits", "seeds"), [
    ("fashion-regularizers", "regularizers", 3), ("fashion-bn-vs-dropout", "bn-vs-dropout", 5)])
def test_fashion_presets_ask_the_digits_questions(fashion, digits, seeds):
    spec, same = build_spec(preset=fashion), build_spec(preset=digits)
    assert spec.methods == same.methods and spec.method_options == same.method_options
    assert spec.data == "fashion-mnist" and spec.seeds == seeds and spec.epochs == 30
    assert build_spec(preset=fashion, overrides={"data": "digits"}).train_size == 300


def test_small_cpu_defaults_only_for_bundled_data_and_simple_cnn():
    digits = build_spec(preset="bn-vs-dropout")
    assert digits.train_size == 300 and digits.model_options == {"width": 16}
    assert digits.workers == 2 and digits.epochs == 10
    cifar = build_spec(overrides={"data": "cifar100:/data/cifar-100-python"})
    assert cifar.train_size is None and cifar.model_options == {} and cifar.workers == 1
    resnet = build_spec(preset="schedule", overrides={"model": "resnet18_cifar"})
    assert resnet.train_size == 300 and resnet.model_options == {}
    explicit = build_spec(overrides={"train_size": 500, "epochs": 3})
    assert explicit.train_size == 500 and explicit.epochs == 3 and explicit.batch_size == 8


def test_a_preset_that_asks_does_it_help_overfits_its_control_on_digits_only():
    digits = build_spec()  # regularizers: its recipe on digits, above the small defaults
    assert (digits.train_size, digits.epochs, digits.batch_size) == (100, 20, 8)
    assert digits.workers == 2 and digits.model_options == {"width": 16}
    assert build_spec(overrides={"data": "synthetic"}).train_size == 300
    cifar = build_spec(overrides={"data": "cifar10:/data/cifar-10-batches-py"})
    assert (cifar.train_size, cifar.epochs, cifar.batch_size) == (None, 15, 64)
    assert "[on digits: train_size 100, epochs 20, batch_size 8]" in describe_presets()
    assert "on_digits" not in build_spec().model_dump()


def test_require_overfit_needs_the_control_and_is_not_part_of_a_run():
    spec = build_spec(overrides={"require_overfit": True})
    assert spec.require_overfit and spec.run_key("dropout") == build_spec().run_key("dropout")
    with pytest.raises(SpecError, match=r"require_overfit: the regime is read off the method "
                       r"named 'control', which is not among methods \['dropout'\]"):
        build_spec(overrides={"require_overfit": True, "methods": ["dropout"]})


def test_the_run_key_follows_the_bytes_of_the_weights_file(tmp_path):
    path = tmp_path / "w.pt"
    path.write_bytes(b"first weights")
    spec = build_spec(overrides={"data": "synthetic", "methods": ["control"],
                                 "weights": str(path)})
    first = spec.run_key("control")
    assert spec.run_settings("control")["shared"]["weights_sha256"] is not None
    path.write_bytes(b"other weights, longer")  # the same path, other contents
    assert spec.run_key("control") != first
    path.write_bytes(b"first weights")
    assert spec.run_key("control") == first
    plain = build_spec(overrides={"data": "synthetic", "methods": ["control"]})
    assert "weights_sha256" not in plain.run_settings("control")["shared"]  # keys unchanged


@pytest.mark.parametrize(("path", "what"), [
    (None, "is a directory, not a file"),  # tmp_path itself
    (Path("/dev/null"), "is a character device, not a regular file"),
])
def test_a_spec_path_that_is_not_a_file_says_what_it_is(tmp_path, path, what):
    path = tmp_path if path is None else path
    with pytest.raises(SpecError, match=f"spec file '{path}' {what}"):
        build_spec(spec_file=path)
    with pytest.raises(MissingFileError, match="does not exist"):
        build_spec(spec_file=tmp_path / "nope.toml")


def test_an_int_still_fits_a_float(tmp_path):
    spec = build_spec(spec_file=write(tmp_path, "[experiment]\nlr = 1\n"
                                                "[methods.dropout]\np = 1\n"))
    assert spec.lr == 1.0 and spec.options_for("dropout").p == 1.0
