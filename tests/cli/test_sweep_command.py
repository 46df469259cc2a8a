"""``convdrop sweep``: a tiny run from flags, and bad input as one line before any output."""

from __future__ import annotations

import contextlib
import csv
import json
import socket

import pytest

from convdrop.cli import main
from convdrop.lab.spec.presets import OVERFIT_RECIPE
from convdrop.lab.sweep.expand import build_sweep

from conftest import assert_png, files, write_image_folder

FAST = ["--data", "synthetic", "--train-size", "24", "--epochs", "1", "--seeds", "1",
        "--batch-size", "12", "--image-size", "16", "--model-option", "width=4",
        "--workers", "1", "--quiet"]


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def test_cli_sweep_runs_and_prints_the_verdict(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["sweep", *FAST, "--method", "dropout", "--p", "0.3", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "convdrop sweep sweep: dropout, 2 settings x 1 seeds" in printed
    assert "fewer than 2 seeds" in printed and "report:" in printed
    assert printed.index("Regime: control ") < printed.index("fewer than 2 seeds")
    assert (out / "report.md").is_file() and (out / "runs" / "dropout-p0.3" / "seed0").is_dir()
    # One epoch cannot overfit: with --require-overfit the same sweep (read back, not
    # retrained) ends with status 3 and one line, after its report.
    assert main(["sweep", *FAST, "--method", "dropout", "--p", "0.3", "--out", str(out),
                 "--require-overfit"]) == 3
    err = capsys.readouterr().err.strip()
    assert err.startswith("convdrop sweep: --require-overfit: the control's regime is '")
    assert err.endswith(f"not 'overfits'; {out / 'report.md'} says why (exit status 3)")


@pytest.mark.parametrize("argv, message", [
    (["--p", "0.1,2"], "argument --p: invalid value"),
    (["--method", "cutout", "--p", "0.1"], "sweep.method must be a method with a drop rate"),
    (["--method", "dropout", "--p", "0.1", "--block-size", "3"],
     "sweep.block_size applies to DropBlock methods; method 'dropout'"),
    (["--p", "0.1", "--placement", "nowhere"], "sweep.placement 'nowhere' is not a placement"),
    (["--p", "0.1", "--placement", "head"],
     "sweep setting 'dropblock_scheduled-p0.1-head': placement 'head' takes"),
    (["--preset", "nope"], "argument --preset: invalid choice 'nope'"),
    (["--p", "0.1", "--epochs", "0"], "argument --epochs: invalid value '0'"),
    (["--p", "0.1", "--no-control", "--require-overfit"],
     "sweep.require_overfit: the regime is read off the method named 'control'"),
    (["--p", ",".join(f"{k / 1000:g}" for k in range(1, 1001))],
     "sweep: 1,001 settings x 1 seeds = 1,001 runs, more than the 1,000 allowed; shorten "
     "sweep.p, or allow them with --max-runs 1001"),
    (["--p", "0.1,0.2", "--seeds", "2", "--max-runs", "5"], "= 6 runs, more than the 5"),
    (["--p", "0.1", "--max-runs", "0"], "argument --max-runs: invalid value '0'"),
    (["--p", "0.1", "--model-option", "width=100000"],
     "model_options: model 'simple_cnn' with width=100000 has 1,980,157,"),
])
def test_bad_input_is_one_line_and_writes_nothing(argv, message, tmp_path, capsys,
                                                  monkeypatch):
    monkeypatch.delenv("CONVDROP_DEBUG", raising=False)
    out = tmp_path / "out"
    with pytest.raises(SystemExit) if "argument" in message else contextlib.nullcontext():
        assert main(["sweep", *FAST, *argv, "--out", str(out)]) == 2
    captured = capsys.readouterr()
    err = [line for line in _lines(captured.err) if not line.startswith(("usage:", "  "))]
    assert len(err) == 1 and message in err[0] and "Traceback" not in captured.err
    assert captured.out == "" and not out.exists()


def test_presets_lists_the_sweeps(capsys):
    assert main(["presets"]) == 0
    assert "dropblock-dose" in capsys.readouterr().out


SEARCH = ["--search", "optuna", "--p", "0.05,0.3", "--block-size", "1,3", "--sampler", "random",
          "--sampler-seed", "0"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_cli_search_confirms_on_fresh_seeds_and_writes_a_winner_train_reads(tmp_path, capsys):
    out = tmp_path / "out"
    flags = [*FAST[:FAST.index("--seeds")], *FAST[FAST.index("--seeds") + 2:]]
    assert main(["sweep", *flags, "--seeds", "2", *SEARCH, "--trials", "3", "--confirm", "2",
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "trials until the study holds 3 (random, pruner median, up to 1 at once on " \
           "local) x 1 seed(s), then the best 2 and the control over 2 fresh seeds" in printed
    assert "trial 2: dropblock_scheduled-p" in printed
    assert "(the winner's curse)" in printed or "(no curse this time)" in printed
    results = json.loads((out / "results.json").read_text())
    assert {r["seed"] for r in results} == {1000, 1001}  # the verdict's runs: fresh seeds only
    assert len({r["method"] for r in results}) == 3 and "control" in {r["method"] for r in results}
    trials = list(csv.DictReader((out / "trials.csv").open()))
    assert [t["trial"] for t in trials] == ["0", "1", "2"]
    for trial in trials:  # the search's runs: seed 0 only
        assert sorted(p.name for p in (out / "runs" / trial["setting"]).iterdir())[0] == "seed0"
    report = (out / "report.md").read_text()
    for part in ("## Verdict", "From the confirmation runs only (seeds 1000-1001)",
                 "## Winner's curse", "## Confirmation (2 fresh seeds per setting)", "## Trials",
                 "optimization_history.png"):
        assert part in report
    assert_png(out / "optimization_history.png")
    assert main(["train", "--spec", str(out / "sweep_spec.toml"), "--seed", "7", "--epochs",
                 "1", "--out", str(tmp_path / "winner")]) == 0
    assert len(list((tmp_path / "winner" / "runs").glob("*/seed7/result.json"))) == 1


def test_a_search_honours_require_overfit_on_its_confirmed_control(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["sweep", *FAST, *SEARCH, "--trials", "1", "--confirm", "1",
                 "--require-overfit", "--out", str(out)]) == 3
    captured = capsys.readouterr()
    regime = next(line for line in captured.out.splitlines() if line.startswith("Regime: "))
    assert captured.out.index(regime) < captured.out.index("report: ")
    assert "convdrop sweep: --require-overfit: the control's regime is '" in captured.err
    assert "## Regime (confirmation runs)" in (out / "report.md").read_text()


def test_a_study_of_another_search_is_refused_naming_the_difference(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["sweep", *FAST, *SEARCH, "--trials", "1", "--confirm", "0", "--out",
                 str(out)]) == 0
    before = files(out)
    capsys.readouterr()
    assert main(["sweep", *FAST, *SEARCH, "--block-size", "1,5", "--trials", "1",
                 "--out", str(out)]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and len(_lines(captured.err)) == 1
    assert "study 'sweep' in " in captured.err and "(block_size 1..3 there, 1..5 now)" \
        in captured.err
    assert files(out) == before  # refused before anything was written


@pytest.mark.parametrize("argv, message", [
    (["--search", "optuna", "--trials", "0"], "argument --trials: invalid value '0'"),
    (["--trials", "3"], "--trials applies to --search optuna"),
    (["--search", "optuna"], "--trials: required with --search optuna"),
    (["--search", "optuna", "--trials", "2", "--storage", "not a url"],
     "--storage 'not a url': not a database URL"),
    (["--search", "optuna", "--trials", "2", "--storage", "postgresql://u:pw@127.0.0.1:{port}/x"],
     "--storage 'postgresql://u:***@127.0.0.1:{port}/x': cannot use the database"),
    (["--search", "optuna", "--trials", "2", "--p", "0.05,0.3", "--adaptive"],
     "sweep.adaptive: successive halving"),
    (["--search", "optuna", "--trials", "2", "--p", "0.1"], "sweep: nothing to search"),
    (["--search", "optuna", "--trials", "2", "--confirm", "0", "--require-overfit"],
     "--require-overfit: a search judges it on the confirmation's control runs, and "
     "--confirm 0 runs none"),
    (["--search", "optuna", "--trials", "2", "--sampler", "cmaes"],
     "argument --sampler: invalid choice 'cmaes'"),
])
def test_bad_search_input_is_one_line_and_writes_nothing(argv, message, tmp_path, capsys,
                                                         monkeypatch):
    monkeypatch.delenv("CONVDROP_DEBUG", raising=False)
    port = str(_free_port())
    argv, message = [a.replace("{port}", port) for a in argv], message.replace("{port}", port)
    test_bad_input_is_one_line_and_writes_nothing(argv, message, tmp_path, capsys, monkeypatch)


@pytest.mark.slow  # ~30 s on a loaded 2-core machine; compare's same recipe is in make test
def test_a_streamed_folder_sweeps_over_two_run_workers(tmp_path, monkeypatch, capsys):
    """compare's README folder recipe, as a sweep: two run workers on a streamed folder."""
    monkeypatch.chdir(tmp_path)
    write_image_folder(tmp_path / "DATA", {"a": 6, "b": 6}, size=(16, 16))
    code = main(["sweep", "--data", "folder:DATA", "--method", "dropout", "--p", "0.1",
                 "--seeds", "1", "--epochs", "1", "--image-size", "16", "--workers", "2"])
    assert code == 0, capsys.readouterr().err
    runs = json.loads((tmp_path / "results" / "sweep-sweep" / "results.json").read_text())
    assert [(r["method"], r["status"]) for r in runs] == [("control", "ok"),
                                                          ("dropout-p0.1", "ok")]


def test_a_model_too_large_for_the_machine_is_one_line_naming_it(tmp_path, capsys):
    """The audit's spec file: the preflight counts the parameters on the meta device and
    refuses before anything is allocated, printed or written."""
    spec = tmp_path / "big.toml"
    spec.write_text('[experiment]\ndata = "synthetic"\nmodel_options = { width = 100000 }\n'
                    '[sweep]\nmethod = "dropout"\np = [0.1]\n', encoding="utf-8")
    out = tmp_path / "out"
    assert main(["sweep", "--spec", str(spec), "--out", str(out)]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and not out.exists() and "Traceback" not in captured.err
    (line,) = _lines(captured.err)
    assert line.startswith("convdrop sweep: error: model_options: model 'simple_cnn' with "
                           "width=100000 has 1,980,157,") and "GiB of memory this" in line


def test_help_shows_the_defaults_a_sweep_runs_on_the_bundled_data(capsys):
    """`sweep --help` showed compare's spec defaults (1 worker, 15 epochs, batch 64, all
    images) beside a default sweep that runs 2 workers, 10 epochs, batch 32, 300 images."""
    with pytest.raises(SystemExit):
        main(["sweep", "--help"])
    text = capsys.readouterr().out
    runs = build_sweep(probe=lambda spec, method: 0.0).spec  # the default sweep, on digits
    assert runs.data == "digits"
    for field in ("workers", "epochs", "train_size", "batch_size", "lr"):
        flag = f"\n  --{field.replace('_', '-')} "  # its entry, not the usage line
        entry = " ".join(text[text.index(flag) + 1:].split("\n  -")[0].split())
        recipe = OVERFIT_RECIPE.get(field)  # the default sweep's own recipe on digits
        shown = (f"{recipe} with dropblock-dose on digits" if recipe is not None
                 else f"; {getattr(runs, field)} on digits and synthetic")
        assert getattr(runs, field) == (recipe or getattr(runs, field)) and shown in entry, entry
    entry = " ".join(text[text.index("\n  --model-option") + 1:].split("\n  -")[0].split())
    assert f"width={runs.model_options['width']} for simple_cnn on digits" in entry
