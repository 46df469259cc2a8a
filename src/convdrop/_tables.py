"""One Markdown pipe-table writer for every report, walkthrough and benchmark."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["ALIGN_RULES", "markdown_table"]

ALIGN_RULES = {None: "---", "left": ":---", "right": "---:", "center": ":---:"}


def _cell(text: str) -> str:
    # a bare "|" would end the cell; an empty cell is written "| |", not "|  |"
    return " " + text.replace("|", "\\|") + " " if text else " "


def _line(cells: Sequence[str]) -> str:
    return "|" + "|".join(map(_cell, cells)) + "|"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]],
                   align: Sequence[str | None] | None = None) -> str:
    """A GitHub-flavoured Markdown table, lines joined by newlines, no trailing newline.

    Args:
        header: the column titles.
        rows: the cells, one sequence of strings per row, each as long as ``header``.
        align: per column ``"left"``, ``"right"``, ``"center"`` or None (the renderer's
            default); None for all columns by default.
    """
    align = [None] * len(header) if align is None else list(align)
    if len(align) != len(header):
        raise ValueError(f"align must have one entry per column ({len(header)}), got {align!r}")
    unknown = [a for a in align if a not in ALIGN_RULES]
    if unknown:
        raise ValueError(f"align entries must be one of {tuple(ALIGN_RULES)}, got {unknown!r}")
    short = [row for row in rows if len(row) != len(header)]
    if short:
        raise ValueError(f"every row must have {len(header)} cells, got {list(short[0])!r}")
    rule = "|" + "|".join(ALIGN_RULES[a] for a in align) + "|"
    return "\n".join([_line(header), rule, *(_line(row) for row in rows)])
