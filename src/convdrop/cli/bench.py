"""``convdrop bench``: the flags, and the glue to :mod:`convdrop.bench`."""

from __future__ import annotations

import argparse

import torch

from convdrop._devices import resolve_device
from convdrop.bench.model import model_overhead
from convdrop.bench.ops import FULL_SHAPES, QUICK_SHAPES, bench_shape, render
from convdrop.cli.checks import check_p_and_block, check_positive
from convdrop.ops.dispatch import backend_status


def add_cli(subparsers: argparse._SubParsersAction) -> None:
    """Register ``convdrop bench``."""
    parser = subparsers.add_parser("bench", help="time DropBlock against the floor and peers")
    parser.add_argument("--quick", action="store_true", help="small shapes, few repeats")
    parser.add_argument("--p", type=float, default=0.1, help="drop probability (default 0.1)")
    parser.add_argument("--block-size", type=int, default=7, help="block side (default 7)")
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats per op")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument("--skip-model", action="store_true", help="skip the ResNet-18 step")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Entry point of ``convdrop bench``."""
    check_p_and_block(args)
    check_positive(args, ["repeats"])
    device = str(resolve_device(args.device))
    shapes = QUICK_SHAPES if args.quick else FULL_SHAPES
    repeats = args.repeats or (5 if args.quick else 20)
    print(
        f"# convdrop bench: torch {torch.__version__}, {device}, "
        f"{torch.get_num_threads()} threads, fp32, p={args.p}, block={args.block_size}, "
        f"median of {repeats}; {backend_status()}\n"
    )
    for shape in shapes:
        print(render(shape, bench_shape(shape, args.p, args.block_size, repeats, device)))
        print()
    if not args.skip_model:
        print(model_overhead(quick=args.quick, device=device, repeats=repeats))
    return 0
