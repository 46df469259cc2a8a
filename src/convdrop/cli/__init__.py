"""The ``convdrop`` command line: one subcommand per module of this package.

Each module listed in ``COMMAND_MODULES`` exposes ``add_cli(subparsers)``, which
adds its subparser and sets ``func`` (its ``run``: takes the parsed namespace and
returns an exit code). Argument parsing lives only here; the library modules below
take plain typed arguments. Heavy imports (matplotlib, rich, scipy) wait until a
command runs, so ``convdrop --help`` stays fast.

Errors: a :class:`convdrop.errors.UserError` (bad input) prints as one line,
``convdrop CMD: error: ...``, and exits with 2, as argparse does for bad flags. Any
other exception is a bug: its traceback shows, then a line asking to report it.
``CONVDROP_DEBUG=1`` shows the traceback behind a user error too. A warning is one
line too, ``convdrop CMD: warning: ...``, without the source line Python adds.

Output into a pipe that closed early (``convdrop presets | head -1``) ends the command
quietly with 141, as a process killed by SIGPIPE would.

Ctrl-C exits with 130. Only the first press interrupts; later ones are ignored, so the
cleanup the first starts (workers stopped, locks released) runs to its end, and a second
press cannot escape as an uncaught ``KeyboardInterrupt`` (exit status -2).
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import threading
import traceback
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from convdrop.cli.parser import OneLineParser
from convdrop.errors import ArgumentError, UserError, one_line_warnings
from convdrop.ops import native

COMMAND_MODULES: tuple[str, ...] = (
    "convdrop.cli.compare",
    "convdrop.cli.sweep",
    "convdrop.cli.presets",
    "convdrop.cli.bench",
    "convdrop.cli.explain",
    "convdrop.cli.masks",
    "convdrop.cli.correlation",
    "convdrop.cli.train",
)

EXIT_USER_ERROR = 2  # as argparse
EXIT_BUG = 1  # as an uncaught exception
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 128 + int(getattr(signal, "SIGPIPE", 13))  # 141, as a shell reports it


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every subcommand registered."""
    parser = OneLineParser(
        prog="convdrop",
        description="Structured dropout for convolutional networks: ops, benchmarks, "
        "experiments and pictures.",
        epilog="A bad input is reported as one line; CONVDROP_DEBUG=1 adds its traceback.",
    )
    parser.add_argument("--version", action="version", version=f"convdrop {_version()}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(name).add_cli(subparsers)
    return parser


def _version() -> str:
    """The installed distribution's version (``unknown`` when run from a bare source tree)."""
    try:
        return version("convdrop")
    except PackageNotFoundError:
        return "unknown"


def _check_environment() -> None:
    """``CONVDROP_BACKEND`` and ``CONVDROP_NATIVE`` are read deep inside the ops; checked here
    first, so a bad value is one user-error line before anything runs."""
    try:
        native.backend_from(os.environ)
    except native.NativeSettingError as err:
        raise ArgumentError(str(err)) from err


def _run(args: argparse.Namespace) -> int:
    _check_environment()
    with one_line_warnings(f"convdrop {args.command}"):  # a message, not Python's source line
        return int(args.func(args) or 0)


def _command_parser(parser: argparse.ArgumentParser, command: str) -> argparse.ArgumentParser:
    (subparsers,) = (a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return subparsers.choices[command]


def _interrupt_once(signum: int, frame: Any) -> None:
    """SIGINT's handler while a command runs: a ``KeyboardInterrupt`` the first time, and
    from then on SIGINT is ignored (the process is on its way out)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise KeyboardInterrupt


@contextmanager
def _one_interrupt() -> Iterator[None]:
    """Within the block, only the first Ctrl-C interrupts (main thread only). When none
    came, the previous handler is back after it; after one, SIGINT stays ignored."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, _interrupt_once)
    try:
        yield
    finally:
        if signal.getsignal(signal.SIGINT) is _interrupt_once:
            signal.signal(signal.SIGINT, previous)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``convdrop`` console script."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # named by the command's own parser, which suggests its closest flag
        _command_parser(parser, args.command).error(f"unrecognized arguments: {' '.join(extra)}")
    with _one_interrupt():
        return _main(args)


def _main(args: argparse.Namespace) -> int:
    prefix = f"convdrop {args.command}"
    try:
        code = _run(args)
        sys.stdout.flush()  # a pipe that closed early fails here, not at exit
        return code
    except UserError as err:
        if os.environ.get("CONVDROP_DEBUG"):
            traceback.print_exc()
        print(f"{prefix}: error: {err}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print(f"{prefix}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # the reader is gone: nothing more to say, and nowhere to say it
        _silence_stdout()
        return EXIT_BROKEN_PIPE
    except Exception:  # a bug: its traceback, and how to report it
        traceback.print_exc()
        print(f"{prefix}: internal error: this is a bug in convdrop; please report it with "
              "the traceback above and the command that ran", file=sys.stderr)
        return EXIT_BUG


def _silence_stdout() -> None:
    """Point stdout at the null device, so the flush at exit cannot fail again."""
    try:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, sys.stdout.fileno())
    except (OSError, ValueError):  # no real stdout (a test's capture): nothing to flush
        pass


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
