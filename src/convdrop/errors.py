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
:func:`did_you_mean` adds the near-miss suggestion to a message about a name.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = [
    "ArgumentError", "DataError", "LaunchError", "MissingFileError", "OutputError",
    "RunFolderError", "RunsFailedError", "SpecError", "UserError", "did_you_mean",
]


class UserError(Exception):
    """Bad input from the user, shown as one line: the message says what to change."""


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
