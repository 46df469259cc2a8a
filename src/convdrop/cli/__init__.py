"""The ``convdrop`` command line: one subcommand per module.

Each module listed in ``COMMAND_MODULES`` exposes ``add_cli(subparsers)``, which
adds its subparser and sets ``func`` (a callable taking the parsed namespace and
returning an exit code). Modules keep heavy imports (matplotlib, rich) inside
their functions so ``convdrop --help`` stays fast.

Errors: a :class:`convdrop.errors.UserError` (bad input) prints as one line,
``convdrop CMD: error: ...``, and exits with 2, as argparse does for bad flags. Any
other exception is a bug: its traceback shows, then a line asking to report it.
``CONVDROP_DEBUG=1`` shows the traceback behind a user error too.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback
from collections.abc import Callable, Sequence

from convdrop.errors import ArgumentError, UserError

COMMAND_MODULES: tuple[str, ...] = (
    "convdrop.lab.runner",
    "convdrop.bench.ops",
    "convdrop.viz.explain",
    "convdrop.viz.masks",
    "convdrop.viz.correlation",
    "convdrop.lab.train",
)

# These commands still check their flags with ValueError (from convdrop.ops.validate and
# PIL); until they raise UserError, those errors are read as the user's.
_VALUE_ERROR_COMMANDS: tuple[str, ...] = ("bench", "masks", "correlation")

EXIT_USER_ERROR = 2  # as argparse
EXIT_BUG = 1  # as an uncaught exception
EXIT_INTERRUPTED = 130


class CliError(UserError):
    """A user-facing error: printed as one line, exit code 2, no traceback."""


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="convdrop",
        description="Structured dropout for convolutional networks: ops, benchmarks, "
        "experiments and pictures.",
        epilog="A bad input is reported as one line; CONVDROP_DEBUG=1 adds its traceback.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(name).add_cli(subparsers)
    return parser


def _check_environment() -> None:
    """Variables read deep inside the ops, checked here so a bad value is a user error."""
    if "CONVDROP_NATIVE" in os.environ:
        from convdrop.ops import native as _native

        try:
            _native._is_enabled()
        except ValueError as err:
            raise ArgumentError(str(err)) from err


def _as_user_errors(func: Callable[[argparse.Namespace], int]
                    ) -> Callable[[argparse.Namespace], int]:
    """``func`` with its ValueError and FileNotFoundError raised as user errors."""
    def run(args: argparse.Namespace) -> int:
        try:
            return func(args)
        except (ValueError, TypeError, FileNotFoundError) as err:
            if isinstance(err, UserError):
                raise
            raise ArgumentError(str(err)) from err

    return run


def _run(args: argparse.Namespace) -> int:
    _check_environment()
    func = args.func
    if args.command in _VALUE_ERROR_COMMANDS:
        func = _as_user_errors(func)
    return int(func(args) or 0)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``convdrop`` console script."""
    args = build_parser().parse_args(argv)
    prefix = f"convdrop {args.command}"
    try:
        return _run(args)
    except UserError as err:
        if os.environ.get("CONVDROP_DEBUG"):
            traceback.print_exc()
        print(f"{prefix}: error: {err}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print(f"{prefix}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception:  # a bug: its traceback, and how to report it
        traceback.print_exc()
        print(f"{prefix}: internal error: this is a bug in convdrop; please report it with "
              "the traceback above and the command that ran", file=sys.stderr)
        return EXIT_BUG


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
