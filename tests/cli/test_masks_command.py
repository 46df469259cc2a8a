"""``convdrop masks`` end to end: the PNG, and bad flags or images as one-line errors."""

from __future__ import annotations

import pytest

from convdrop import cli

from conftest import assert_png, write_image


def test_cli_masks_writes_png(tmp_path, capsys):
    out = tmp_path / "masks.png"
    assert cli.main(["masks", "--out", str(out), "--dpi", "30", "--steps", "10"]) == 0
    assert_png(out)
    text = capsys.readouterr().out
    assert str(out) in text and "one draw each (seed 0), at p = 0.1" in text
    lines = [line for line in text.splitlines() if "% of units dropped in this draw" in line]
    assert [line.split(":")[0].strip() for line in lines] == [
        "dropout", "spatial_dropout", "drop_block", "drop_block_shared", "cutout"]


def test_cli_masks_with_image(tmp_path):
    source = write_image(tmp_path / "in.jpg", "RGB", (50, 40))
    out = tmp_path / "masks.png"
    argv = ["masks", "--image", str(source), "--out", str(out), "--dpi", "30", "--seed", "5"]
    assert cli.main(argv) == 0
    assert_png(out)


@pytest.mark.parametrize("extra,needle", [
    (["--image", "{tmp}/missing.png"], "missing.png"),
    (["--image", "{tmp}/bad.png"], "bad.png"),
    (["--p", "1.5"], "--p"),
    (["--p", "-0.1"], "--p"),
    (["--block-size", "0"], "--block-size"),
    (["--steps", "0"], "--steps"),
])
def test_cli_masks_errors_exit_2(tmp_path, capsys, extra, needle):
    (tmp_path / "bad.png").write_bytes(b"\x89PNG but not really")
    argv = ["masks", "--out", str(tmp_path / "o.png"), *(a.format(tmp=tmp_path) for a in extra)]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "o.png").exists()
