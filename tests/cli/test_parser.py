"""convdrop.cli.parser: argparse's errors as one line, with the closest choice or flag."""

from __future__ import annotations

import pytest

from convdrop.cli.parser import OneLineParser, one_line_error


def test_invalid_choice_gets_the_closest_choice() -> None:
    message = "argument --optimizer: invalid choice: 'adam' (choose from 'sgd', 'adamw')"
    assert one_line_error(message, []) == ("argument --optimizer: invalid choice 'adam' "
                                           "(choose from 'sgd', 'adamw'); did you mean 'adamw'?")


def test_an_unrelated_value_gets_no_suggestion() -> None:
    message = "argument --optimizer: invalid choice: 'zzz' (choose from 'sgd', 'adamw')"
    assert "did you mean" not in one_line_error(message, [])


def test_unknown_flag_gets_the_closest_flag_not_matched_on_its_dashes() -> None:
    flags = ["--workers", "--out", "--seeds"]
    assert one_line_error("unrecognized arguments: --workrs 2", flags).endswith(
        "did you mean '--workers'?")
    assert "did you mean" not in one_line_error("unrecognized arguments: --bogus", flags)
    assert "did you mean" not in one_line_error("unrecognized arguments: stray", flags)


def test_the_parser_exits_2_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    parser = OneLineParser(prog="convdrop x")
    parser.add_argument("--mode", choices=["fast", "slow"])
    with pytest.raises(SystemExit) as info:
        parser.parse_args(["--mode", "fats"])
    err = capsys.readouterr().err
    assert info.value.code == 2 and len(err.splitlines()) == 1
    assert err.startswith("convdrop x: error: argument --mode: invalid choice 'fats'")
    assert "did you mean 'fast'?" in err and err.rstrip().endswith("(see convdrop x --help)")
