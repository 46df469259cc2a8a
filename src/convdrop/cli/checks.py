"""Flag checks shared by the commands: a bad flag becomes an :class:`ArgumentError`.

The library checks its arguments with :mod:`convdrop.ops.validate`, which raises a
plain ``ValueError`` (a library caller's mistake); on the command line the same value
came from a flag, so it is the user's to fix. These helpers make it so where the flag
is read, and nowhere else: a ``ValueError`` raised later, while the command works, is
still a bug with its traceback.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from convdrop.errors import ArgumentError, OutputError, UserError
from convdrop.ops import validate as v

__all__ = ["as_argument_error", "check_p_and_block", "check_positive", "writing_out_file"]


@contextmanager
def writing_out_file(out: str) -> Iterator[None]:
    """Check ``--out`` names a file (not a folder) first; a failed write then names ``--out``."""
    if Path(out).is_dir():
        raise OutputError(f"--out {out}: is a folder; give the path of a PNG file")
    try:
        yield
    except OutputError as err:
        raise OutputError(f"--out {out}: {err}") from err


@contextmanager
def as_argument_error() -> Iterator[None]:
    """Re-raise a ``ValueError`` (or ``TypeError``) from checking flags as an ArgumentError."""
    try:
        yield
    except (ValueError, TypeError) as err:
        if isinstance(err, UserError):
            raise
        raise ArgumentError(str(err)) from err


def check_p_and_block(args: argparse.Namespace) -> None:
    """``--p`` in [0, 1] and ``--block-size`` >= 1; the message names the flag and the value."""
    with as_argument_error():
        v.check_p(args.p, "--p")
        v.check_positive_int(args.block_size, "--block-size")


def check_positive(args: argparse.Namespace, names: Sequence[str]) -> None:
    """Each of ``names`` (flag names without ``--``) a positive int, unless left out (None)."""
    with as_argument_error():
        for name in names:
            value = getattr(args, name.replace("-", "_"))
            if value is not None:
                v.check_positive_int(value, "--" + name)

