"""``convdrop masks`` end to end: the PNG, and bad flags or images as one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from convdrop import cli

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _write(path: Path, mode: str, size: tuple[int, int]) -> Path:
    colour = 128 if mode == "L" else (200, 50, 25)
    Image.new(mode, size, colour).save(path)
    return path


def assert_png(path: Path) -> None:
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    with Image.open(path) as img:
        assert img.format == "PNG"
        assert img.width > 100 and img.height > 100


def test_cli_masks_writes_png(tmp_path, capsys):
    out = tmp_path / "masks.png"
    assert cli.main(["masks", "--out", str(out), "--dpi", "30", "--steps", "10"]) == 0
    assert_png(out)
    assert str(out) in capsys.readouterr().out


def test_cli_masks_with_image(tmp_path):
    source = _write(tmp_path / "in.jpg", "RGB", (50, 40))
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
