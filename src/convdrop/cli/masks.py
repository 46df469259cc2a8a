"""``convdrop masks``: the flags, and the glue to :mod:`convdrop.viz.masks`."""

from __future__ import annotations

import argparse

import torch

from convdrop.cli.checks import check_p_and_block, check_positive, writing_out_file
from convdrop.errors import ArgumentError, MissingFileError
from convdrop.viz.masks import draw_masks, mask_panels, read_image, realized_fractions


def add_cli(subparsers: argparse._SubParsersAction) -> None:
    """Register ``convdrop masks``."""
    parser = subparsers.add_parser(
        "masks", help="draw dropout, spatial dropout, DropBlock and Cutout masks on one image",
        description="Draw the masks of every method at the same p from the real ops (seeded), "
        "the masked images and the linear drop-rate schedule, as one PNG.",
    )
    parser.add_argument("--image", metavar="PATH", help="PNG or JPEG (default: a bundled digit 9)")
    parser.add_argument("--p", type=float, default=0.1, help="drop probability (default 0.1)")
    parser.add_argument("--block-size", type=int, default=7, help="DropBlock side (default 7)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--steps", type=int, default=1000,
                        help="steps of the linear drop-rate ramp (default 1000)")
    parser.add_argument("--out", default="masks.png", help="output PNG (default masks.png)")
    parser.add_argument("--dpi", type=int, default=100, help="figure resolution (default 100)")
    parser.set_defaults(func=run)


def check_args(args: argparse.Namespace) -> None:
    """Check the flags shared with ``convdrop correlation``; errors name the flag."""
    check_p_and_block(args)
    check_positive(args, [flag for flag in ("steps", "trials", "dpi") if hasattr(args, flag)])


def image_from_flag(path: str | None) -> torch.Tensor:
    """The ``--image`` (or the bundled digit); a missing or unreadable file is a user error."""
    try:
        return read_image(path)
    except FileNotFoundError as err:
        raise MissingFileError(str(err)) from err
    except ValueError as err:  # convdrop._image_io.ImageReadError, naming the file
        raise ArgumentError(str(err)) from err


def run(args: argparse.Namespace) -> int:
    """Entry point of ``convdrop masks``."""
    check_args(args)
    with writing_out_file(args.out):
        panels = mask_panels(image_from_flag(args.image), args.p, args.block_size, args.seed,
                             steps=args.steps)
        out = draw_masks(panels, args.out, p=args.p, block_size=args.block_size,
                         seed=args.seed, dpi=args.dpi)
    print(f"wrote {out}; one draw each (seed {args.seed}), at p = {args.p:g}:")
    for name, fraction in realized_fractions(panels).items():
        print(f"  {name}: {100 * fraction:.1f} % of units dropped in this draw")
    return 0
