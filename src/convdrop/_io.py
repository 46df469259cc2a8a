"""Atomic file writes: a crash or Ctrl-C never leaves a half-written result.

Each writer writes a temporary file in the destination's folder, flushes it to
disk, then ``os.replace``-s it over the destination (atomic on POSIX and Windows).
A failed write (a file in the way, read-only, disk full) is an
:class:`convdrop.errors.OutputError` naming the file; the destination keeps its old
content. A process killed mid-write leaves its temporary file behind:
:func:`remove_stale_temps` deletes those (call it while no other process writes there).
"""

from __future__ import annotations

import csv
import errno
import io
import json
import os
import re
import tempfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, BinaryIO

from convdrop.errors import OutputError

# ".<name>.<8 random characters>.tmp", what mkstemp makes below
_TEMP_NAME = re.compile(r"\..+\.[A-Za-z0-9_]{8}\.tmp")


def write_failure(path: Path, err: OSError) -> OutputError:
    """A one-line error naming ``path`` and why it could not be written."""
    reason = err.strerror or str(err)
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        reason += " (disk full: free some space and run the same command again)"
    return OutputError(f"cannot write {path}: {reason}")


def unusable(path: Path | str) -> str | None:
    """Why the system cannot use ``path`` at all, or None: a name too long for it (a part
    over 255 bytes, or the whole over 4,096, on Linux), a loop of symbolic links, a NUL
    byte. Checked where a path first arrives, so it is one line naming the setting, not a
    traceback from deep inside; a path that does not exist (yet) is usable."""
    try:
        os.stat(path)
    except OSError as err:
        if err.errno in (errno.ENAMETOOLONG, errno.ELOOP):
            return f"{err.strerror or err}: {len(str(path)):,} characters" \
                if err.errno == errno.ENAMETOOLONG else "a loop of symbolic links"
    except ValueError:
        return "it holds a NUL byte"
    return None


def atomic_write(path: Path, write: Callable[[BinaryIO], None]) -> Path:
    """Call ``write(handle)`` on a temp file next to ``path``, then move it into place."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as err:
        raise write_failure(path, err) from err
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), 0o644)  # mkstemp creates 0600; results are for sharing
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(err, OSError) and not isinstance(err, OutputError):
            raise write_failure(path, err) from err
        raise
    return path


def remove_stale_temps(folder: Path) -> list[Path]:
    """Delete the temporary files that killed writers left in ``folder``; returns them."""
    try:
        stale = [p for p in Path(folder).iterdir() if _TEMP_NAME.fullmatch(p.name)]
    except (FileNotFoundError, NotADirectoryError):
        return []
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def write_text(path: Path, text: str) -> Path:
    """Atomically write UTF-8 text."""
    return atomic_write(path, lambda handle: handle.write(text.encode("utf-8")))


def write_json(path: Path, data: Any) -> Path:
    """Atomically write indented JSON."""
    return write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def write_csv(path: Path, rows: Iterable[Mapping[str, Any]], fieldnames: list[str]) -> Path:
    """Atomically write rows as CSV with a header."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fieldnames, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return write_text(path, buffer.getvalue())


def write_png(path: Path, figure: Any, dpi: int = 120) -> Path:
    """Atomically save a matplotlib ``Figure`` as PNG."""
    return atomic_write(path, lambda handle: figure.savefig(handle, format="png", dpi=dpi))


def read_csv(path: Path) -> list[dict[str, str]]:
    """Rows of a CSV file as dicts of strings."""
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))
