"""convdrop.lab.runs.preflight: checks before any output, and the settings an old run differs in."""

from __future__ import annotations

import json

import pytest

from convdrop.errors import RunFolderError, SpecError, did_you_mean
from convdrop.lab.runs import preflight as pf
from convdrop.lab.spec.experiment import ExperimentSpec, build_spec


def spec(**settings: object):
    return build_spec(overrides={"data": "synthetic", "methods": ["control"], **settings})


def test_settings_diff_names_each_changed_setting() -> None:
    old, new = spec(epochs=5), spec(epochs=3, lr=0.01)
    assert pf.settings_diff(old.run_settings("control"), new.run_settings("control")) == [
        "epochs 5 there, 3 now", "lr 0.003 there, 0.01 now"]


def test_settings_diff_of_a_method_option() -> None:
    old = ExperimentSpec(data="synthetic", methods=["dropout"])
    new = ExperimentSpec(data="synthetic", methods=["dropout"],
                         method_options={"dropout": {"p": 0.3}})
    assert pf.settings_diff(old.run_settings("dropout"), new.run_settings("dropout")) == [
        "methods option p None there, 0.3 now"]


def test_models_and_placements_are_built_on_meta(monkeypatch: pytest.MonkeyPatch) -> None:
    data = pf.load_run_data(spec(), 0)
    pf.check_models(build_spec(overrides={"model": "resnet50", "methods": ["dropblock"]}), data)
    with pytest.raises(SpecError, match="model: unknown model 'resnet5'; did you mean"):
        pf.check_models(spec(model="resnet5"), data)


def test_a_run_without_a_readable_old_spec_names_the_two_keys(tmp_path) -> None:
    run = tmp_path / "runs" / "control" / "seed0"
    run.mkdir(parents=True)
    (run / "result.json").write_text(json.dumps({"run_key": "0123"}), encoding="utf-8")
    with pytest.raises(RunFolderError, match="run_key 0123 there, .* now"):
        pf.check_runs(spec(), tmp_path, [0])
    pf.check_runs(spec(), tmp_path, [1])  # another seed: nothing there


def test_did_you_mean() -> None:
    assert did_you_mean("dropblok", ["dropblock", "dropout"]) == "; did you mean 'dropblock'?"
    assert did_you_mean("DropOut", ["dropblock", "dropout"]) == "; did you mean 'dropout'?"
    assert did_you_mean("zzz", ["dropblock"]) == "" and did_you_mean(3, ["x"]) == ""


def test_an_image_size_the_model_cannot_take_is_named_before_training() -> None:
    import dataclasses

    from convdrop.lab.train.run_data import load_run_data

    chosen = spec(model_options={"width": 8})
    tiny = dataclasses.replace(load_run_data(chosen, 0), image_size=4)
    with pytest.raises(SpecError, match=r"^image_size: model 'simple_cnn' cannot take 4x4 "
                                        r"images \(.*\); choose a larger image_size$"):
        pf.check_models(chosen, tiny)
    pf.check_models(chosen, dataclasses.replace(tiny, image_size=8))  # fits


def test_a_streamed_folder_is_checked_without_writing(tmp_path) -> None:
    from conftest import write_image_folder

    root = write_image_folder(tmp_path / "d", {"a": 2, "b": 2}, size=(12, 12))
    out = tmp_path / "out"
    pf.preflight(spec(data=f"folder:{root}", image_size=16, model_options={"width": 8}), out,
                 [0])
    assert not out.exists()


def test_methods_alike_but_for_their_rate_build_one_model(monkeypatch) -> None:
    """A sweep's points along p build the same model: one is checked per line, so a
    1,000-point sweep is not 1,000 model builds before its first line."""
    built: list[str] = []
    real = pf.build_recipe
    monkeypatch.setattr(pf, "build_recipe",
                        lambda s, method, *a: built.append(method) or real(s, method, *a))
    rates = {f"d{k}": {"base": "dropout", "p": k / 10} for k in range(1, 10)}
    blocks = {f"b{k}": {"base": "dropblock", "p": 0.1, "block_size": k} for k in (3, 5)}
    chosen = ExperimentSpec(data="synthetic", methods=["control", *rates, *blocks],
                            method_options={**rates, **blocks}, model_options={"width": 4})
    fresh, _ = pf.check_models(chosen, pf.load_run_data(chosen, 0))
    assert built == ["control", "d1", "b3", "b5"]
    assert list(fresh) == chosen.methods  # every method's --weights keys, built or not


def test_a_model_too_large_for_the_device_is_refused_naming_it() -> None:
    huge = spec(model_options={"width": 100000})
    with pytest.raises(SpecError, match=r"^model_options: model 'simple_cnn' with "
                       r"width=100000 has 1,980,157,\d{3},\d{3} parameters; training it "
                       r"needs at least [\d,.]+ GiB \(float32 weights, gradients and adamw "
                       r"state\), more than the [\d,.]+ GiB of memory this cpu has"):
        pf.check_models(huge, pf.load_run_data(huge, 0))
    pf.check_models(spec(model_options={"width": 64}), pf.load_run_data(huge, 0))
