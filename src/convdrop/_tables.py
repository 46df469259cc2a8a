"""Table writers for every report, walkthrough and benchmark: Markdown, and plain text that
fits a terminal.

:func:`text_table` fits a width by wrapping cells at spaces, never by cutting a word: the
first column (the names) is never wrapped at all, the other columns shrink, widest slack
first, down to their longest word. A table that cannot fit even so runs wider rather
than lose a character. A no-break space (``\u00a0``) joins words that must stay on one
line (``90.6 ± 1.4``); it prints as a space.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence

__all__ = ["ALIGN_RULES", "NBSP", "markdown_table", "text_table"]

NBSP = "\u00a0"
GAP = "  "  # between columns

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



def _min_width(cells: Sequence[str], wrap: bool) -> int:
    return max((len(word) for cell in cells for word in (cell.split(" ") if wrap else [cell])),
               default=0)


def _fit(header: Sequence[str], rows: Sequence[Sequence[str]], width: int) -> list[int]:
    """Column widths: natural, then the widest slack shrunk one at a time until it fits."""
    columns = [[header[i], *(row[i] for row in rows)] for i in range(len(header))]
    widths = [max(map(len, cells)) for cells in columns]
    floors = [max(_min_width(cells[1:], i > 0), _min_width(cells[:1], True))
              for i, cells in enumerate(columns)]
    while sum(widths) + len(GAP) * (len(widths) - 1) > width:
        slack = [w - f for w, f in zip(widths, floors)]
        widest = max(range(len(widths)), key=lambda i: slack[i])
        if slack[widest] <= 0:
            break  # it cannot fit without cutting a word: run wider
        widths[widest] -= 1
    return widths


def _wrapped(cell: str, width: int) -> list[str]:
    lines = textwrap.wrap(cell, width, break_long_words=False, break_on_hyphens=False)
    return [line.replace(NBSP, " ") for line in lines] or [""]


def text_table(header: Sequence[str], rows: Sequence[Sequence[str]], *, width: int = 120,
               right: Sequence[bool] | None = None) -> str:
    """Aligned plain-text columns under a dashed rule, at most ``width`` characters wide
    where the words allow it; no trailing newline.

    Args:
        header: the column titles (wrapped like any cell).
        rows: one sequence of strings per row, each as long as ``header``.
        width: the columns available, e.g. the terminal's.
        right: per column, True to align right; the first column left, the others right
            by default.
    """
    right = [i > 0 for i in range(len(header))] if right is None else list(right)
    if any(len(row) != len(header) for row in rows) or len(right) != len(header):
        raise ValueError(f"every row and right must have {len(header)} entries")
    widths = _fit(header, rows, width)
    if sum(widths) + len(GAP) * (len(widths) - 1) > width:  # too narrow: break joined words too
        rows = [[row[0], *(cell.replace(NBSP, " ") for cell in row[1:])] for row in rows]
        widths = _fit(header, rows, width)

    def block(cells: Sequence[str]) -> list[str]:
        wrapped = [_wrapped(cell, w) for cell, w in zip(cells, widths)]
        height = max(map(len, wrapped))
        return [GAP.join((c[k] if k < len(c) else "").rjust(w) if r else
                         (c[k] if k < len(c) else "").ljust(w)
                         for c, w, r in zip(wrapped, widths, right)).rstrip()
                for k in range(height)]

    lines = block(header) + [GAP.join("-" * w for w in widths)]
    for row in rows:
        lines += block(row)
    return "\n".join(lines)
