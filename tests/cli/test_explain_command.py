"""``convdrop explain`` end to end: text, markdown, JSON, overrides and bad files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from convdrop import cli
from convdrop.viz.explain import EXAMPLE_NET, render_text, walkthrough


@pytest.fixture
def explain_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Register only this module, so these tests do not depend on other subcommands."""
    monkeypatch.setattr(cli, "COMMAND_MODULES", ("convdrop.cli.explain",))


def test_explain_is_registered() -> None:
    assert "convdrop.cli.explain" in cli.COMMAND_MODULES


def test_cli_text(explain_only: None, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["explain"]) == 0
    out = capsys.readouterr().out
    assert out == render_text(walkthrough(EXAMPLE_NET))
    assert "Training pass (with the dropout masks)" in out


def test_cli_markdown(explain_only: None, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["explain", "--format", "markdown"]) == 0
    assert capsys.readouterr().out.startswith("# Toy dropout walkthrough\n")


def test_cli_json(explain_only: None, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["explain", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["output"] == [3, -2] and data["inference"]["output"] == [2.25, 0.75]


def test_cli_overrides(explain_only: None, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["explain", "--json", "--scaling", "none"]) == 0
    assert json.loads(capsys.readouterr().out)["inference"]["output"] == [0.78125, 0.96875]
    assert cli.main(["explain", "--p", "0.75"]) == 0
    assert "1/(1-p) = 4" in capsys.readouterr().out


def test_cli_file(explain_only: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "net.json"
    path.write_text(json.dumps({
        "x": [3], "layers": [{"W": [[2]], "b": [1], "activation": "none"}],
        "masks": [[0]], "p": 0.2, "scaling": "none",
    }), encoding="utf-8")
    # training: in = 3*0 = 0, z = 2*0 + 1 = 1; inference: in = 3*0.8 = 2.4, z = 4.8 + 1 = 5.8
    assert cli.main(["explain", "--file", str(path), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["output"] == [1] and data["inference"]["output"] == pytest.approx([5.8])
    assert cli.main(["explain", "--file", str(path)]) == 0
    assert "z[0] = 2·0 + 1 = 1" in capsys.readouterr().out


@pytest.mark.parametrize("content", ["not json", '{"x": [1]}', '{"x": [1, 1], "layers": 3, '
                                     '"masks": [], "p": 0.5}'])
def test_cli_bad_file_exits_2(
    explain_only: None, tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str
) -> None:
    path = tmp_path / "net.json"
    path.write_text(content, encoding="utf-8")
    assert cli.main(["explain", "--file", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("convdrop explain: error: ") and err.count("\n") == 1


def test_cli_missing_file_exits_2(explain_only: None, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["explain", "--file", "/nonexistent/net.json"]) == 2
    assert "net file not found: /nonexistent/net.json" in capsys.readouterr().err


def test_cli_json_and_markdown_conflict(explain_only: None) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(["explain", "--json", "--format", "markdown"])
    assert info.value.code == 2


def test_cli_overflow_is_one_line(explain_only: None, tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    net = tmp_path / "big.json"
    net.write_text(json.dumps({**EXAMPLE_NET, "x": [1e308, 1e308]}), encoding="utf-8")
    assert cli.main(["explain", "--file", str(net)]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "overflows float64" in captured.err
    assert len(captured.err.strip().splitlines()) == 1
