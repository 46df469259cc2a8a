"""``convdrop compare`` and ``train``: every bad input is one line before any output or file.

Each error case runs the real command in an empty working directory and checks: exit
code 2, one line on stderr naming the flag or key and the value (with the closest
valid name where one is near), nothing on stdout, no traceback, and no file written.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch

from convdrop.cli import main
from convdrop.cli.compare import failure_summary
from convdrop.lab.data import fashion
from convdrop.lab.report.stats import summarize
from convdrop.lab.runs import preflight as preflight_module
from convdrop.lab.spec.experiment import build_spec
from convdrop.models import create

from conftest import write_fashion_mnist

ONE_RUN = ["--data", "synthetic", "--epochs", "1", "--quiet"]  # the flags train takes too
SMALL = [*ONE_RUN, "--seeds", "1", "--workers", "1"]


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def _one_line_error(capsys: pytest.CaptureFixture[str], command: str = "compare") -> str:
    out, err = capsys.readouterr()
    lines = [line for line in err.splitlines() if line.strip()]
    assert out == "", "nothing may be printed before the error"
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith(f"convdrop {command}: error: ")
    return lines[0]


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CONVDROP_DEBUG", raising=False)
    return tmp_path


@pytest.mark.parametrize(("argv", "expected"), [
    (["--methods", "control,dropblok"],
     "experiment.methods: unknown method 'dropblok'; did you mean 'dropblock'?"),
    (["--methods", "control", "--model", "resnet_18"],
     "model: unknown model 'resnet_18'; did you mean 'resnet18'?"),
    (["--methods", "control", "--data", "folder:missing"], "folder:missing"),
    (["--methods", "control", "--data", "fashion-mnist:missing"],
     "fashion-mnist:missing: no such directory; expected the four idx files"),
    (["--methods", "control", "--data", "digts"],
     "unknown dataset kind 'digts' in spec 'digts'; did you mean 'digits'?"),
    (["--methods", "control", "--model-option", "widht=8"],
     "model_options: unknown option 'widht' for model 'simple_cnn'; did you mean 'width'?"),
    (["--spec", "placement.toml"],
     "got 'hed'; did you mean 'head'?"),
    (["--methods", "control", "--train-size", "100000"], "train_size=100000 exceeds"),
    (["--methods", "batchnorm", "--model", "resnet18_cifar"],
     "method 'batchnorm' switches batch norm on"),
    (["--methods", "control", "--device", "cuda:7"], "device 'cuda:7'"),
    (["--methods", "control", "--device", "tpu"], "device must be 'auto' or one of"),
    (["--methods", "control", "--model-option", "width=100000"],
     "model_options: model 'simple_cnn' with width=100000 has 1,980,157,"),
    (["--optimizer", "adam"], "argument --optimizer: invalid choice 'adam' "
                              "(choose from 'sgd', 'adamw'); did you mean 'adamw'?"),
    (["--workrs", "2"], "unrecognized arguments: --workrs 2; did you mean '--workers'?"),
])
def test_compare_errors_are_one_line_before_anything_is_written(workdir, capsys, argv,
                                                                expected):
    spec = workdir.parent / "placement.toml"  # outside the folder that must stay empty
    spec.write_text('[experiment]\nmethods = ["head"]\n[methods.head]\nbase = "dropout"\n'
                    'placement = "hed"\n', encoding="utf-8")
    argv = [str(spec) if arg == "placement.toml" else arg for arg in argv]
    with pytest.raises(SystemExit) if argv[0].startswith(("--opt", "--workrs")) else _no_exit():
        assert main(["compare", *SMALL, *argv, "--out", "results"]) == 2
    assert expected in _one_line_error(capsys)
    assert _files(workdir) == []


class _no_exit:  # noqa: N801 - a stand-in for pytest.raises where main returns
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> bool:
        return False


def test_fashion_mnist_compares_from_idx_files(workdir, capsys):
    write_fashion_mnist(workdir.parent / "fm", n_train=60, n_test=20)
    argv = ["compare", *SMALL, "--data", f"fashion-mnist:{workdir.parent / 'fm'}", "--methods",
            "control,dropblock", "--train-size", "30", "--out", "results"]
    assert main(argv) == 0
    results = json.loads((workdir / "results" / "results.json").read_text())
    assert [r["status"] for r in results] == ["ok", "ok"]
    report = (workdir / "results" / "report.md").read_text()
    assert "held in memory, 28x28" in report


def test_fashion_mnist_without_files_says_how_to_get_them(workdir, capsys, monkeypatch):
    monkeypatch.setattr(fashion, "DEBIAN_DIR", workdir.parent / "no-package")
    assert main(["compare", *SMALL, "--data", "fashion-mnist", "--methods", "control"]) == 2
    line = _one_line_error(capsys)
    assert f"no Fashion-MNIST files in {workdir.parent / 'no-package'}" in line
    assert "`apt-get install dataset-fashion-mnist`" in line and _files(workdir) == []
    root = workdir.parent / "fm"
    write_fashion_mnist(root)
    (root / "train-labels-idx1-ubyte.gz").write_bytes(b"not gzip")
    assert main(["compare", *SMALL, "--data", f"fashion-mnist:{root}"]) == 2
    assert f"{root / 'train-labels-idx1-ubyte.gz'}: cannot be read" in _one_line_error(capsys)
    assert _files(workdir) == []


def test_a_spec_file_with_misspelled_keys_names_each_with_its_closest(workdir, capsys):
    (workdir / "s.toml").write_text('[experiment]\nepocs = 3\n[methods.x]\nbase = "dropot"\n'
                                    'methods = ["x"]\n', encoding="utf-8")
    assert main(["compare", "--spec", "s.toml"]) == 2
    line = _one_line_error(capsys)
    assert "experiment.epocs: unknown key; did you mean 'epochs'?" in line
    assert "methods.x.methods: unknown key" in line
    assert _files(workdir) == ["s.toml"]


def test_device_is_checked_before_the_data_is_read(workdir, capsys, monkeypatch):
    def no_data(*args: object, **kwargs: object) -> None:
        raise AssertionError("the data was read before the device was checked")

    monkeypatch.setattr(preflight_module, "load_run_data", no_data)
    assert main(["compare", *SMALL, "--methods", "control", "--device", "cuda:9"]) == 2
    assert "device 'cuda:9'" in _one_line_error(capsys)


def _finished_run(out: Path, **settings: object) -> None:
    """A finished control seed 0 in ``out`` as a compare with ``settings`` left it."""
    spec = build_spec(overrides={"data": "synthetic", "methods": ["control"], **settings})
    out.mkdir(parents=True)
    (out / "config.json").write_text(json.dumps(spec.model_dump()), encoding="utf-8")
    run = out / "runs" / "control" / "seed0"
    run.mkdir(parents=True)
    (run / "result.json").write_text(json.dumps({
        "method": "control", "seed": 0, "status": "ok", "run_key": spec.run_key("control"),
        "test_acc": 0.9, "train_acc": 0.95, "epochs": spec.epochs}), encoding="utf-8")


@pytest.mark.parametrize("command", ["compare", "train"])
def test_an_existing_run_with_other_settings_says_which_differ(workdir, capsys, command):
    _finished_run(workdir / "results", epochs=5, lr=0.01)
    before = {p: p.read_bytes() for p in (workdir / "results").rglob("*") if p.is_file()}
    argv = [command, *(SMALL if command == "compare" else ONE_RUN), "--lr", "0.02", "--out",
            "results"]
    argv += ["--methods", "control"] if command == "compare" else ["--method", "control"]
    assert main(argv) == 2
    line = _one_line_error(capsys, command)
    # compare's SMALL runs one worker; train keeps the spec's two, as the finished run had
    workers = "; workers 2 there, 1 now" if command == "compare" else ""
    assert ("holds a run with other settings (epochs 5 there, 1 now; lr 0.01 there, 0.02 now"
            f"{workers})") in line
    after = {p: p.read_bytes() for p in (workdir / "results").rglob("*") if p.is_file()}
    assert after == before


def test_a_diverged_comparison_writes_its_report_and_exits_with_one_line(workdir, capsys):
    argv = ["compare", *SMALL, "--methods", "control", "--optimizer", "sgd", "--lr", "1e6",
            "--out", "results"]
    assert main(argv) == 2
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err
    assert lines[0].startswith("convdrop compare: error: 1 of 1 runs failed (first: control "
                               "seed 0: non-finite training loss")
    report = (workdir / "results" / "report.md").read_text(encoding="utf-8")
    assert "1 run(s) failed" in report and "non-finite training loss" in report
    assert "report: results/report.md" in out


def test_failure_summary_is_none_when_every_run_finished():
    ok = summarize([{"method": "control", "seed": 0, "status": "ok", "test_acc": 0.9,
                     "train_acc": 0.9}])
    assert failure_summary(ok, Path("r.md")) is None
    mixed = summarize([{"method": "control", "seed": 0, "status": "ok", "test_acc": 0.9,
                        "train_acc": 0.9},
                       {"method": "control", "seed": 1, "status": "failed", "error": "x " * 200}])
    line = failure_summary(mixed, Path("r.md"))
    assert line.startswith("1 of 2 runs failed (first: control seed 1: x x") and "..." in line


def test_train_checks_before_it_prints_or_writes(workdir, capsys):
    argv = ["train", *ONE_RUN, "--method", "dropblok", "--out", "results"]
    assert main(argv) == 2
    assert "did you mean 'dropblock'?" in _one_line_error(capsys, "train")
    assert main(["train", *ONE_RUN, "--method", "control", "--device", "cuda:5", "--out", "r"]) == 2
    assert "device 'cuda:5'" in _one_line_error(capsys, "train")
    assert _files(workdir) == []


def test_version_and_help_list_defaults_choices_and_models(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0 and capsys.readouterr().out.startswith("convdrop ")
    for command in ("compare", "train"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        text = " ".join(capsys.readouterr().out.split())
        for shown in ("--batch-size", "--lr", "--model-option", "(default: 3)",
                      "(default: 15; 10 on digits and synthetic, 30 on fashion-mnist, 20 with "
                      "regularizers on digits)",
                      "resnet18_cifar",
                      "{sgd,adamw}"):
            if command == "train" and shown == "(default: 3)":
                continue  # train has no --seeds: it runs one seed
            assert shown in text, (command, shown)


def test_weights_name_what_stays_fresh_and_other_bytes_are_other_runs(workdir, capsys):
    """--weights of another number of classes: no PyTorch warning, the fresh classifier named
    on the console and in report.md; the file overwritten with other weights is then a run
    of other settings, refused in one line rather than reused."""
    def save(seed: int) -> None:
        torch.manual_seed(seed)
        torch.save(create("simple_cnn", num_classes=10, width=4).state_dict(), "w.pt")

    save(0)
    argv = ["compare", *SMALL, "--methods", "control", "--train-size", "32", "--model-option",
            "width=4", "--weights", "w.pt", "--out", "results"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(argv) == 0
    assert [str(w.message) for w in caught] == []
    note = ("weights w.pt: head.fc2.bias, head.fc2.weight kept their fresh initialization "
            "(shapes differ for this data); every other tensor loaded")
    assert note in capsys.readouterr().out.splitlines()
    assert note in (workdir / "results" / "report.md").read_text()
    before = {p: p.read_bytes() for p in (workdir / "results").rglob("*") if p.is_file()}
    save(1)
    assert main(argv) == 2
    line = _one_line_error(capsys)
    assert "holds a run with other settings (the contents of weights w.pt changed since)" in line
    assert {p: p.read_bytes() for p in (workdir / "results").rglob("*") if p.is_file()} == before
