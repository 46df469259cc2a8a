"""The one Markdown table writer."""

from __future__ import annotations

import pytest

from convdrop._tables import NBSP, markdown_table, text_table


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


def test_text_table_wraps_cells_to_the_width_and_never_cuts_the_names() -> None:
    header = ["method", "a long header of words", "value"]
    rows = [["dropblock_label_smoothing", "one two three four", f"1.0{NBSP}±{NBSP}0.5"],
            ["dropout_p10", "x", "2"]]
    text = text_table(header, rows, width=44)
    lines = text.splitlines()
    assert max(map(len, lines)) <= 44
    assert any(line.startswith("dropblock_label_smoothing ") for line in lines)
    assert "1.0 ± 0.5" in text and NBSP not in text  # joined words stay together
    narrower = text_table(header, rows, width=40)  # too narrow: the joined words break too
    assert max(map(len, narrower.splitlines())) <= 40 and "1.0 ±" in narrower


def test_text_table_runs_wider_rather_than_cut_a_word() -> None:
    text = text_table(["name", "b"], [["a_very_long_method_name", "unbreakable_value"]],
                      width=10)
    assert "a_very_long_method_name" in text and "unbreakable_value" in text


def test_text_table_at_full_width_is_one_line_per_row() -> None:
    text = text_table(["m", "v"], [["a", "1"], ["bb", "22"]], width=80)
    assert text.splitlines() == ["m    v", "--  --", "a    1", "bb  22"]
