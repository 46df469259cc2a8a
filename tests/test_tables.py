"""The one Markdown table writer."""

from __future__ import annotations

import pytest

from convdrop._tables import markdown_table


def test_plain_table() -> None:
    text = markdown_table(["a", "b"], [["1", "2"], ["3", "4"]])
    assert text == "| a | b |\n|---|---|\n| 1 | 2 |\n| 3 | 4 |"


def test_alignment_rules() -> None:
    text = markdown_table(("l", "r", "c", "d"), [], ("left", "right", "center", None))
    assert text.splitlines()[1] == "|:---|---:|:---:|---|"


def test_pipes_are_escaped_and_empty_cells_stay_narrow() -> None:
    text = markdown_table(("name", "note", "x"), [("a|b", "", "")])
    assert text.splitlines()[2] == "| a\\|b | | |"


def test_no_rows_is_header_and_rule() -> None:
    assert markdown_table(("only",), []) == "| only |\n|---|"


@pytest.mark.parametrize(("rows", "align", "fragment"), [
    ([["1"]], None, r"every row must have 2 cells, got \['1'\]"),
    ([], ["left"], r"align must have one entry per column \(2\)"),
    ([], ["left", "middle"], r"align entries must be one of .*got \['middle'\]"),
])
def test_bad_shapes_and_alignments(rows, align, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        markdown_table(("a", "b"), rows, align)
