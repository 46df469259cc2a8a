"""``convdrop correlation``: the flags, and the glue to :mod:`convdrop.viz.correlation`."""

from __future__ import annotations

import argparse

from convdrop.cli.checks import as_argument_error, writing_out_file
from convdrop.cli.masks import check_args, image_from_flag
from convdrop.ops import validate as v
from convdrop.viz.correlation import correlation_study, render_table
from convdrop.viz.correlation_plot import draw_study


def add_cli(subparsers: argparse._SubParsersAction) -> None:
    """Register ``convdrop correlation``."""
    parser = subparsers.add_parser(
        "correlation", help="how much of what dropout and DropBlock drop the neighbours recover",
        description="Drop units of an image (or of a fixed random conv's feature maps) with "
        "dropout and with DropBlock at the same p, fill them back from their kept neighbours "
        "(3x3 mean and 3x3 linear fit), print a markdown table and draw a figure.",
    )
    parser.add_argument("--image", metavar="PATH", help="PNG or JPEG (default: a bundled digit 9)")
    parser.add_argument("--source", choices=("image", "features"), default="image",
                        help="drop from the image itself or from ReLU(random 3x3 conv) maps")
    parser.add_argument("--p", type=float, default=0.1, help="drop probability (default 0.1)")
    parser.add_argument("--block-size", type=int, default=7, help="DropBlock side (default 7)")
    parser.add_argument("--trials", type=int, default=20, help="masks per method (default 20)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--out", default="correlation.png",
                        help="output PNG (default correlation.png)")
    parser.add_argument("--dpi", type=int, default=100, help="figure resolution (default 100)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Entry point of ``convdrop correlation``."""
    check_args(args)
    with as_argument_error():
        v.check_number(args.p, "--p", 0, 1, include_low=False, include_high=False,
                       expected="strictly between 0 and 1 here (something must be both "
                                "dropped and kept)")
    study = correlation_study(image_from_flag(args.image), args.p, args.block_size, args.trials,
                              args.seed, source=args.source)
    print(render_table(study))
    print(study.conclusion())
    with writing_out_file(args.out):
        print(f"wrote {draw_study(study, args.out, dpi=args.dpi)}")
    return 0
