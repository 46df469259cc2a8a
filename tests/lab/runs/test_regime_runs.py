"""The regime of real runs: a control trained long on a handful of digits overfits, one
trained for one epoch underfits; ``compare`` prints it before its table and
``--require-overfit`` turns "does not overfit" into exit status 3 after the report.

Tiny on purpose (20 digits at 16x16, a width-8 network, one CPU thread): seconds each.
"""

from __future__ import annotations

import json

import pytest
import torch

from convdrop.cli import main
from convdrop.lab.report import regime
from convdrop.lab.runs.runner import compare, regimes
from convdrop.lab.spec.experiment import build_spec

# 2 images per class, 5 optimizer steps an epoch: learnt by epoch 10 here (100 %), then a gap
# of over 30 points on 359 validation digits.
TINY = {"data": "digits", "train_size": 20, "image_size": 16, "model_options": {"width": 8},
        "augment": "none", "batch_size": 4, "seeds": 1, "workers": 1, "methods": ["control"]}
FLAGS = ["--data", "digits", "--train-size", "20", "--image-size", "16", "--model-option",
         "width=8", "--augment", "none", "--batch-size", "4", "--seeds", "1", "--workers", "1",
         "--methods", "control", "--quiet"]


@pytest.fixture(autouse=True)
def one_thread():
    """One thread per run: on a shared 2-core machine two threads wait on each other."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_a_control_trained_long_on_few_images_overfits(tmp_path):
    spec = build_spec(overrides={**TINY, "epochs": 20})
    report, summaries = compare(spec, tmp_path, show_progress=False)
    found = regimes(tmp_path, summaries)["control"]
    assert found.kind == regime.OVERFITS, found
    assert found.train.mean >= 0.99 and found.gap.mean >= 0.2 and found.seeds == 1
    assert found.gap_from is not None and found.gap_from < 15
    text = report.read_text()
    assert text.index("## Regime") < text.index("## Results")
    assert "control overfits from epoch" in text
    rows = (tmp_path / "runs/control/seed0/metrics.csv").read_text().splitlines()
    assert "train_eval_acc" in rows[0].split(",") and len(rows) == 21


def test_a_control_trained_one_epoch_underfits(tmp_path):
    spec = build_spec(overrides={**TINY, "epochs": 1})
    _, summaries = compare(spec, tmp_path, show_progress=False)
    found = regimes(tmp_path, summaries)["control"]
    assert found.kind == regime.UNDERFITS, found
    assert found.window == 1 and found.train.mean < 0.5


def test_compare_prints_the_regime_first_and_require_overfit_exits_3(tmp_path, capsys):
    out = tmp_path / "one"
    assert main(["compare", *FLAGS, "--epochs", "1", "--out", str(out),
                 "--require-overfit"]) == 3
    printed, err = capsys.readouterr()
    assert printed.index("Regime: control underfits") < printed.index("test acc (%)")
    assert err.strip() == (f"convdrop compare: --require-overfit: the control's regime is "
                           f"'underfits', not 'overfits'; {out / 'report.md'} says why (exit "
                           f"status 3)")
    assert (out / "report.md").is_file() and json.loads((out / "config.json").read_text())[
        "require_overfit"] is True
    # The same runs, now without the flag: read back, not retrained, and exit 0.
    assert main(["compare", *FLAGS, "--epochs", "1", "--out", str(out)]) == 0
