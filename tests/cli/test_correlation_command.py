"""``convdrop correlation`` end to end: table, figure, and bad flags as one-line errors."""

from __future__ import annotations

import pytest
from PIL import Image

from convdrop import cli


def test_cli_correlation_prints_table_and_writes_png(tmp_path, capsys):
    out = tmp_path / "corr.png"
    argv = ["correlation", "--trials", "2", "--out", str(out), "--dpi", "30"]
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    assert "| dropout |" in printed and "recoverable from their neighbours" in printed
    with Image.open(out) as img:
        assert img.format == "PNG" and img.width > 100 and img.height > 100


@pytest.mark.parametrize("extra,needle", [
    (["--image", "{tmp}/missing.png"], "missing.png"),
    (["--image", "{tmp}/bad.jpg"], "bad.jpg"),
    (["--p", "0"], "--p"),
    (["--p", "1"], "--p"),
    (["--p", "7"], "--p"),
    (["--block-size", "-3"], "--block-size"),
    (["--trials", "0"], "--trials"),
])
def test_cli_correlation_errors_exit_2(tmp_path, capsys, extra, needle):
    (tmp_path / "bad.jpg").write_text("text, not a JPEG")
    argv = ["correlation", "--out", str(tmp_path / "o.png"),
            *(a.format(tmp=tmp_path) for a in extra)]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "o.png").exists()
