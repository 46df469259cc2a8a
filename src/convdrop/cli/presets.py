"""``convdrop presets``: list the built-in experiments."""

from __future__ import annotations

import argparse

from convdrop.lab.spec.presets import describe_presets
from convdrop.lab.sweep.presets import describe_sweep_presets


def add_cli(subparsers: argparse._SubParsersAction) -> None:
    """Register ``convdrop presets``."""
    parser = subparsers.add_parser("presets", help="list the built-in experiments")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Entry point of ``convdrop presets``."""
    print(describe_presets())
    print("\nsweeps (convdrop sweep --preset NAME):")
    print(describe_sweep_presets())
    return 0
