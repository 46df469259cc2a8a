"""``convdrop explain``: the flags, and the glue to :mod:`convdrop.viz.explain`."""

from __future__ import annotations

import argparse

from convdrop.viz.explain import (
    EXAMPLE_NET,
    load_net,
    render_markdown,
    render_text,
    to_json,
    walkthrough,
)


def add_cli(subparsers: argparse._SubParsersAction) -> None:
    """Register ``convdrop explain``."""
    parser = subparsers.add_parser(
        "explain",
        help="walk through dropout on a toy fully connected net, step by step",
        description="Compute a toy fully connected net by hand with explicit dropout masks, "
        "then the same net at inference. Without --file a built-in 2 -> 3 -> 2 -> 2 example runs.",
    )
    parser.add_argument("--file", metavar="NET_JSON", help="JSON net: x, layers, masks, p, scaling")
    out = parser.add_mutually_exclusive_group()
    out.add_argument("--format", choices=("text", "markdown"), default="text")
    out.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("--p", type=float, default=None, help="override the drop probability")
    parser.add_argument("--scaling", choices=("inverted", "none"), default=None,
                        help="override the scaling convention")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Load the net (file or built-in), apply overrides, print the walkthrough."""
    net = load_net(args.file) if args.file else EXAMPLE_NET
    overrides = {k: getattr(args, k) for k in ("p", "scaling") if getattr(args, k) is not None}
    if overrides and isinstance(net, dict):
        net = {**net, **overrides}
    result = walkthrough(net)
    if args.json:
        print(to_json(result))
    elif args.format == "markdown":
        print(render_markdown(result), end="")
    else:
        print(render_text(result), end="")
    return 0
