"""``convdrop bench`` end to end, and ``python -m convdrop.bench``."""

from __future__ import annotations

import subprocess
import sys

from convdrop.cli import main


def test_cli_quick_bench(capsys):
    assert main(["bench", "--quick", "--repeats", "1", "--skip-model"]) == 0
    out = capsys.readouterr().out
    assert out.count("### ") == 3 and "x floor" in out
    assert "fused CPU kernel on" in out.splitlines()[0]


def test_cli_bad_arguments_name_the_flag(capsys):
    for flags, message in [(["--p", "2"], "--p must be a probability in [0, 1], got 2.0"),
                           (["--block-size", "0"], "--block-size must be an int >= 1, got 0"),
                           (["--repeats", "0"], "--repeats must be an int >= 1, got 0"),
                           (["--device", "gpu"], "got 'gpu'")]:
        assert main(["bench", "--quick", "--skip-model", *flags]) == 2
        assert message in capsys.readouterr().err


def test_python_m_convdrop_bench_is_the_bench_command():
    done = subprocess.run([sys.executable, "-m", "convdrop.bench", "--help"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.startswith("usage: convdrop bench")
