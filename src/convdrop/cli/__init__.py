"""The ``convdrop`` command line: one subcommand per module.

Each module listed in ``COMMAND_MODULES`` exposes ``add_cli(subparsers)``, which
adds its subparser and sets ``func`` (a callable taking the parsed namespace and
returning an exit code). Modules keep heavy imports (matplotlib, rich) inside
their functions so ``convdrop --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

COMMAND_MODULES: tuple[str, ...] = (
    "convdrop.lab.runner",
    "convdrop.bench.ops",
    "convdrop.viz.explain",
    "convdrop.viz.masks",
    "convdrop.viz.correlation",
    "convdrop.lab.train",
)


class CliError(Exception):
    """A user-facing error: printed as one line, exit code 2, no traceback."""


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="convdrop",
        description="Structured dropout for convolutional networks: ops, benchmarks, "
        "experiments and pictures.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(name).add_cli(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``convdrop`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (CliError, ValueError, TypeError, FileNotFoundError) as err:
        if os.environ.get("CONVDROP_DEBUG"):  # the full traceback, for bug reports
            raise
        print(f"convdrop {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"convdrop {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
