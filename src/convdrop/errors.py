"""Errors that are the user's to fix, told apart from bugs.

``convdrop`` prints a :class:`UserError` as one line (``convdrop CMD: error: ...``)
and exits with 2; any other exception is a bug and shows its traceback. Each
subclass also derives from the built-in error that library callers caught before
(``ValueError``, ``FileNotFoundError``), so ``except ValueError`` keeps working.
:class:`DataError` lives here, below the data readers that raise it (it is also
importable as ``convdrop.lab.data.DataError``); a module with an error only it raises
subclasses :class:`UserError` where it defines it, e.g.
:class:`convdrop.lab.train.engine.NonFiniteLossError`.
This module imports nothing from convdrop, so every module can raise these;
:func:`did_you_mean` adds the near-miss suggestion to a message about a name, and
:func:`file_problem` says what a path the user named is when it is not a readable file.

One line stays one line: a value longer than :data:`MAX_VALUE_CHARS` (a 100,000-character
model name, say) is cut in every :class:`UserError`'s message by :func:`clip_values`, and
:func:`one_line_warnings` shows a warning as one line, without the source line Python's
default format adds.
"""

from __future__ import annotations

import difflib
import os
import re
import stat
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

__all__ = [
    "ArgumentError", "DataError", "LaunchError", "MissingFileError", "OutputError",
    "RunFolderError", "RunsFailedError", "SpecError", "UserError", "clip", "clip_values",
    "did_you_mean", "file_problem", "one_line_warnings", "warning_line",
]

MAX_VALUE_CHARS = 200  # a value in a message is cut beyond this many characters
_OVER = f"{{{MAX_VALUE_CHARS + 1},}}"
# a quoted value ('...' or "...", not an apostrophe inside a word), or an unbroken token
_LONG_VALUE = re.compile(rf"(?<!\w)'([^'\n]{_OVER})'(?!\w)|(?<!\w)\"([^\"\n]{_OVER})\"(?!\w)"
                         rf"|(\S{_OVER})")


def clip(text: str, limit: int = MAX_VALUE_CHARS) -> str:
    """``text``, or its first ``limit`` characters, an ellipsis and its length."""
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text):,} characters)"


def clip_values(message: str) -> str:
    """``message`` with every quoted value or unbroken token longer than
    :data:`MAX_VALUE_CHARS` cut (:func:`clip`), so an error stays a readable line."""

    def cut(match: re.Match[str]) -> str:
        quoted, double, bare = match.groups()
        if bare is not None:
            return clip(bare)
        quote = "'" if quoted is not None else '"'
        value = quoted if quoted is not None else double
        return f"{quote}{value[:MAX_VALUE_CHARS]}…{quote} ({len(value):,} characters)"

    return _LONG_VALUE.sub(cut, message)


class UserError(Exception):
    """Bad input from the user, shown as one line: the message says what to change.

    Its text has long values cut (:func:`clip_values`): a message quotes what it got,
    and what it got may be a 200 KB name.
    """

    def __str__(self) -> str:
        return clip_values(super().__str__())


class ArgumentError(UserError, ValueError):
    """A command-line argument or setting out of range; the message names it and the value."""


class DataError(UserError, ValueError):
    """A dataset could not be read: a bad spec, path, layout or file."""


class SpecError(UserError, ValueError):
    """An experiment spec (preset, TOML file, flags) that is not valid; names key and value."""


class MissingFileError(UserError, FileNotFoundError):
    """A file or folder the user named does not exist."""


class RunFolderError(UserError, ValueError):
    """The output folder holds a run this command must not overwrite or cannot continue."""


class LaunchError(UserError, ValueError):
    """The torchrun environment, or a setting that must fit it (device, batch, sync-bn)."""


class OutputError(UserError, OSError):
    """A file or folder could not be written (a file in the way, read-only, disk full)."""


class RunsFailedError(UserError):
    """Runs of a comparison failed (e.g. a non-finite loss); the report lists each reason."""


def did_you_mean(value: object, choices: Iterable[str]) -> str:
    """``"; did you mean 'dropblock'?"`` for the closest of ``choices``, or ``""``.

    Closeness is :func:`difflib.get_close_matches` (ratio >= 0.6), compared without case,
    so a typo or a wrong separator finds its name and an unrelated word finds none.
    """
    if not isinstance(value, str):
        return ""
    by_folded = {choice.lower(): choice for choice in choices}
    close = difflib.get_close_matches(value.lower(), list(by_folded), n=1, cutoff=0.6)
    return f"; did you mean {by_folded[close[0]]!r}?" if close else ""


_KINDS = ((stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISFIFO, "a named pipe"), (stat.S_ISSOCK, "a socket"))


def file_problem(path: str | os.PathLike[str]) -> str | None:
    """What keeps ``path`` from being read as a file (None if it is a regular file): "does
    not exist", "is a directory, not a file", "is a character device, not a regular file"..."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "does not exist"
    except OSError as err:
        return f"cannot be read ({err.strerror or err})"
    if stat.S_ISDIR(mode):
        return "is a directory, not a file"
    kind = next((name for test, name in _KINDS if test(mode)), "not a regular file")
    return None if stat.S_ISREG(mode) else f"is {kind}, not a regular file"


def warning_line(message: Warning | str, category: type[Warning], prefix: str = "convdrop"
                 ) -> str:
    """``"PREFIX: warning: TEXT"``: a warning's text on one line (long values cut), and its
    category when it is not a plain ``UserWarning`` (e.g. from PyTorch)."""
    text = clip_values(" ".join(str(message).split()))
    kind = "" if category is UserWarning else f" ({category.__name__})"
    return f"{prefix}: warning: {text}{kind}"


@contextmanager
def one_line_warnings(prefix: str = "convdrop") -> Iterator[None]:
    """Show warnings as :func:`warning_line` in the ``with`` block: what the user should
    know, not the file, line number and source line of Python's default format."""
    previous = warnings.formatwarning

    def formatted(message: Warning | str, category: type[Warning], filename: str,
                  lineno: int, line: str | None = None) -> str:
        return warning_line(message, category, prefix) + "\n"

    warnings.formatwarning = formatted  # type: ignore[assignment]
    try:
        yield
    finally:
        warnings.formatwarning = previous
