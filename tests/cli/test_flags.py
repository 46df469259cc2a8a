"""Flags built from the spec's fields: compare and train share one definition."""

from __future__ import annotations

import argparse

import pytest

from convdrop.cli import build_parser, compare, flags, train
from convdrop.lab.spec.experiment import ExperimentSpec

SHARED_ARGV = [
    "--spec", "my.toml", "--preset", "schedule", "--data", "synthetic", "--model", "resnet18",
    "--model-option", "width=8", "--model-option", "dropblock=0.1",
    "--model-option", "batchnorm=True", "--model-option", "variant=head_dropout",
    "--epochs", "3", "--train-size", "40", "--batch-size", "8", "--optimizer", "sgd",
    "--lr", "1e-2", "--weight-decay", "0", "--lr-schedule", "step", "--augment", "crop+flip",
    "--image-size", "48", "--data-mode", "memory", "--normalization", "imagenet",
    "--workers-per-run", "3", "--device", "cpu", "--channels-last", "--no-amp",
    "--weights", "w.pt",
]
SHARED_VALUES = {
    "data": "synthetic", "model": "resnet18",
    "model_options": {"width": 8, "dropblock": 0.1, "batchnorm": True,
                      "variant": "head_dropout"},
    "epochs": 3, "train_size": 40, "batch_size": 8, "optimizer": "sgd", "lr": 0.01,
    "weight_decay": 0.0, "lr_schedule": "step", "augment": "crop+flip", "image_size": 48,
    "data_mode": "memory", "normalization": "imagenet", "loader_workers": 3, "device": "cpu",
    "channels_last": True, "amp": False, "weights": "w.pt",
}


def _parse(argv: list[str]) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def test_compare_and_train_accept_the_same_shared_flags():
    assert set(SHARED_VALUES) == set(flags.SHARED_FIELDS)
    by_compare = _parse(["compare", *SHARED_ARGV])
    by_train = _parse(["train", "--out", "o", *SHARED_ARGV])
    for args in (by_compare, by_train):
        assert flags.given(args, ExperimentSpec, flags.SHARED_FIELDS) == SHARED_VALUES
        assert str(args.spec) == "my.toml" and args.preset == "schedule"
    assert by_compare.func is compare.run and by_train.func is train.run


def test_flags_left_out_are_none_so_the_layers_beneath_decide():
    args = _parse(["compare"])
    assert flags.given(args, ExperimentSpec, (*flags.GRID_FIELDS, *flags.SHARED_FIELDS)) == {}


def test_compare_adds_the_grid():
    args = _parse(["compare", "--methods", "control, dropout", "--seeds", "2", "--workers", "3"])
    assert flags.given(args, ExperimentSpec, flags.GRID_FIELDS) == {
        "methods": ["control", "dropout"], "seeds": 2, "workers": 3}
    with pytest.raises(SystemExit):
        _parse(["train", "--out", "o", "--seeds", "2"])  # one run: --seed, not --seeds


@pytest.mark.parametrize("command", [["compare"], ["train", "--out", "o"]])
@pytest.mark.parametrize(("flag", "value", "expected"), [
    ("--epochs", "0", "greater than or equal to 1"),
    ("--epochs", "ten", "valid integer"),
    ("--lr", "0", "greater than 0"),
    ("--lr", "fast", "valid number"),
    ("--train-size", "-5", "greater than or equal to 1"),
    ("--optimizer", "lbfgs", "choose from 'sgd', 'adamw'"),
    ("--augment", "mixup", "choose from 'none', 'crop', 'crop+flip'"),
    ("--preset", "big", "choose from 'block-size'"),
    ("--model-option", "width", "expected KEY=VALUE, e.g. width=16"),
])
def test_a_bad_value_is_one_line_naming_flag_value_and_expectation(
        capsys, command, flag, value, expected):
    with pytest.raises(SystemExit) as info:
        _parse([*command, flag, value])
    assert info.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith(f"convdrop {command[0]}: error: argument {flag}: ")
    assert repr(value) in last and expected in last


def test_help_shows_the_defaults(capsys):
    for command in ("compare", "train"):
        with pytest.raises(SystemExit):
            _parse([command, "--help"])
        text = " ".join(capsys.readouterr().out.split())
        assert ("training epochs (default: 15; 10 on digits and synthetic, 30 on "
                "fashion-mnist, 20 with regularizers on digits)") in text
        assert "learning rate (default: 0.002; 0.003 on digits and synthetic)" in text
        assert "(default: none; width=16 for simple_cnn on digits, synthetic, fashion-mnist)" \
            in text
        assert "(default: crop; none on fashion- mnist)" in text  # argparse wraps at "-"
        assert "{sgd,adamw} optimizer (default: adamw)" in text
        assert ("--amp, --no-amp bfloat16 autocast (CUDA only); none = on for CUDA (default: "
                "none)") in text
        assert "the --spec file, then these flags" in text


def test_model_options_add_to_those_beneath(tmp_path):
    spec_file = tmp_path / "s.toml"
    spec_file.write_text('[experiment]\nmethods = ["control"]\nmodel_options = {width = 8}\n')
    args = _parse(["compare", "--spec", str(spec_file), "--model-option", "dropblock=0.1"])
    spec = flags.spec_from_args(args, flags.SHARED_FIELDS)
    assert spec.model_options == {"width": 8, "dropblock": 0.1}
    args = _parse(["train", "--out", "o", "--data", "synthetic", "--method", "dropout"])
    spec, method = train.train_spec(args)
    assert method == "dropout" and spec.model_options == {"width": 16}  # small-data default
    # one seed; the small-data default of two workers stays in the run key, as compare's
    assert spec.seeds == 1 and spec.workers == 2 and spec.data == "synthetic"


def test_executor_flags_and_what_they_fix():
    args = _parse(["compare", "--executor", "ray", "--ray-address", "10.0.0.1:6379",
                   "--cpus-per-run", "0.5", "--gpus-per-run", "0.25"])
    settings, fixed = flags.executor_from_args(args)
    assert settings.model_dump() == {"executor": "ray", "ray_address": "10.0.0.1:6379",
                                     "cpus_per_run": 0.5, "gpus_per_run": 0.25}
    assert fixed == {}
    # local is one run at a time: workers 1, unless --workers says otherwise
    assert flags.executor_from_args(_parse(["sweep", "--executor", "local"]))[1] == {
        "workers": 1}
    assert flags.executor_from_args(_parse(["compare", "--executor", "local", "--workers",
                                            "2"]))[1] == {}


@pytest.mark.parametrize(("flag", "value", "expected"), [
    ("--executor", "slurm", "choose from 'local', 'pool', 'ray'"),
    ("--cpus-per-run", "0", "greater than 0"),
    ("--gpus-per-run", "1.5", "less than or equal to 1"),
    ("--gpus-per-run", "-1", "greater than or equal to 0"),
])
def test_a_bad_executor_flag_is_one_line(capsys, flag, value, expected):
    with pytest.raises(SystemExit):
        _parse(["compare", flag, value])
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith(f"convdrop compare: error: argument {flag}: ") and expected in last
