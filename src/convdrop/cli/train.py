"""``convdrop train``: one configuration (a method and a seed), alone or under torchrun.

The options are those of one run of ``convdrop compare`` (a preset, a ``--spec``
file and flags, layered by :func:`convdrop.lab.spec.experiment.build_spec`), and the files
are those of one run: ``OUT/runs/<method>/seed<S>/`` holds ``metrics.csv``,
``config.json``, ``checkpoint.pt`` while unfinished and ``result.json`` at the end
(test and train accuracy, epochs, world size). So ``convdrop compare`` with the same
spec and ``--out`` finds those runs finished and only writes its report, and the reverse:
the spec's ``workers`` (2 on the bundled data) stays in the run's key, and a run in one
process computes with the torch threads one of those worker processes has.

Started as ``torchrun --nproc-per-node K -m convdrop train ...`` the same command
trains with DistributedDataParallel over K processes (see :mod:`convdrop.lab.train.distributed`);
``--batch-size`` is then the global batch, split evenly over the processes.

An unfinished run (a checkpoint) is continued only with ``--resume``; without it
the command refuses rather than start over. ``--resume`` with nothing to resume
starts afresh, so a preemptible job can always pass it. ``--stop-after N`` (hidden,
for tests) stops after N epochs as if the job were killed there.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import torch
from pydantic import Field

from convdrop.cli import flags
from convdrop.errors import ArgumentError, OutputError
from convdrop.lab.runs.executors import worker_threads
from convdrop.lab.runs.preflight import preflight
from convdrop.lab.runs.run import check_run, discard_run, execute
from convdrop.lab.spec.base_methods import BASE_METHODS
from convdrop.lab.spec.experiment import ExperimentSpec
from convdrop.lab.train.distributed import check_sync_bn, per_rank_batch, process_group
from convdrop.lab.train.store import (
    Progress,
    RunPaths,
    check_unfinished,
    finished_result,
    prepare_out,
    read_metrics,
    write_config,
)

Seed = Annotated[int, Field(ge=0, lt=2**32)]  # what torch and numpy take


class StopRequested(Exception):
    """``--stop-after`` reached: leave the run as an interrupted one."""


def train_spec(args: argparse.Namespace) -> tuple[ExperimentSpec, str]:
    """The spec of this one run (``methods=[method]``, one seed) and its method."""
    chosen = {"methods": [args.method]} if args.method else {}
    spec = flags.spec_from_args(args, seeds=1, **chosen)
    if len(spec.methods) != 1:
        raise ArgumentError(f"--method is required: the spec lists {len(spec.methods)} "
                            f"methods {spec.methods}; pick one")
    return spec, spec.methods[0]


def _reporter(paths: RunPaths, say: Callable[[str], None], stop_after: int | None
              ) -> Progress:
    """A progress callback: one line per epoch (rank 0), and the ``--stop-after`` stop."""
    calls = [0]

    def progress(done: int, total: int) -> None:
        calls[0] += 1
        if calls[0] == 1:  # the first call reports where training starts
            if done:
                say(f"resuming after epoch {done} of {total}")
            return
        if say is not _silent:  # rank 0 only: it wrote this epoch's row
            row = read_metrics(paths)[-1]
            say(f"epoch {done}/{total}  " + "  ".join(
                f"{key} {row[key]:.4g}" for key in ("train_loss", "train_acc", "val_acc",
                                                    "drop_rate", "lr"))
                + f"  images/s {row.get('images_per_s', 0):.0f}")
        if stop_after is not None and done == stop_after and done < total:
            raise StopRequested(done)

    return progress


def _silent(text: str) -> None:
    """``say`` of the ranks that stay quiet (all but rank 0) and of ``--quiet``."""


def run(args: argparse.Namespace) -> int:
    """Entry point of ``convdrop train`` (every torchrun process runs it)."""
    spec, method = train_spec(args)
    try:
        return _run(args, spec, method)
    except OutputError as err:
        if str(err).startswith("--out "):  # named already (prepare_out, a run's folder)
            raise
        raise OutputError(f"--out {args.out}: {err}") from err


def _restart(args: argparse.Namespace, spec: ExperimentSpec, method: str,
             paths: RunPaths) -> None:
    """``--restart [RUN]``: delete this run's files; otherwise check them before any write."""
    if args.restart is None:
        check_run(spec, method, args.seed, Path(args.out))
    elif args.restart not in ("", paths.run):
        raise ArgumentError(f"--restart {args.restart!r}: this command trains {paths.run}")
    else:
        discard_run(Path(args.out), method, args.seed)


def _run(args: argparse.Namespace, spec: ExperimentSpec, method: str) -> int:
    # every check before any output; a run to --restart is not checked, it is deleted
    notes = preflight(spec, Path(args.out), [] if args.restart is not None else [args.seed])
    paths = RunPaths.of(prepare_out(Path(args.out)), method, args.seed)
    with process_group(spec.device) as dist:
        if dist.is_writer:
            _restart(args, spec, method, paths)
        say = print if dist.is_writer and not args.quiet else _silent
        done = finished_result(paths, spec.run_key(method), method=method, seed=args.seed,
                               epochs=spec.epochs)
        if done is not None:
            say(f"{paths.root} already holds this finished run; nothing to do")
            return _summary(done, paths, say)
        check_unfinished(paths, resume=args.resume)
        per_rank_batch(spec.batch_size, dist.world_size)
        check_sync_bn(args.sync_bn, dist)
        if dist.is_writer:
            write_config(paths, spec, method, args.seed, world_size=dist.world_size,
                         sync_bn=args.sync_bn)
        threads = worker_threads(spec.workers) if dist.world_size == 1 else \
            torch.get_num_threads()  # under torchrun, its OMP_NUM_THREADS
        say(f"convdrop train {method} seed {args.seed} on {spec.data} / {spec.model}, "
            f"{spec.epochs} epochs, world size {dist.world_size}, {threads} torch thread(s) "
            f"-> {paths.root}")
        for note in notes:  # e.g. which --weights tensors stay fresh
            say(note)
        previous = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            result = execute(spec, method, args.seed, Path(args.out), dist=dist,
                             sync_bn=args.sync_bn,
                             progress=_reporter(paths, say, args.stop_after))
        except StopRequested as stop:
            say(f"stopped after epoch {stop.args[0]} (--stop-after); continue with --resume")
            return 0
        finally:
            torch.set_num_threads(previous)
        return _summary(result, paths, say)


def _summary(result: dict[str, Any], paths: RunPaths, say: Callable[[str], None]) -> int:
    if result.get("status") != "ok":
        say(f"run failed: {result.get('error')}")
        return 1
    say(f"test_acc {result['test_acc']:.4f}  train_acc {result['train_acc']:.4f}  "
        f"epochs {result['epochs']}  world size {result['world_size']}  -> {paths.result}")
    return 0


def add_cli(subparsers: argparse._SubParsersAction) -> None:
    """Register ``convdrop train``."""
    parser = subparsers.add_parser(
        "train", help="train one method and seed (also under torchrun, with DDP)",
        description="Train one configuration of a compare run and write its metrics.csv and "
        "result.json. Under `torchrun --nproc-per-node K -m convdrop train ...` it trains "
        "with DistributedDataParallel; --batch-size is then the global batch, and --device "
        "is auto, cpu or cuda (one GPU per process).",
        epilog=flags.LAYERS_EPILOG,
    )
    parser.add_argument("--method", help="the method to train: "
                        f"{', '.join(BASE_METHODS)}, or a [methods.NAME] of the --spec file "
                        "(default: the spec's, if it lists only one)")
    parser.add_argument("--seed", type=flags.flag_type(Seed), default=0,
                        help="run seed, in [0, 2**32) (default: 0)")
    parser.add_argument("--out", required=True, help="output folder; the run goes to "
                        "OUT/runs/<method>/seed<S>/")
    parser.add_argument("--resume", action="store_true",
                        help="continue an unfinished run from its checkpoint")
    parser.add_argument("--restart", nargs="?", const="", metavar="RUN",
                        help="delete this run's files and train it from scratch")
    flags.add_spec_flags(parser)
    parser.add_argument("--sync-bn", action="store_true",
                        help="SyncBatchNorm across processes (CUDA under torchrun; no effect in "
                        "a single process)")
    parser.add_argument("--quiet", action="store_true", help="no per-epoch lines")
    parser.add_argument("--stop-after", type=int, help=argparse.SUPPRESS)  # tests: fake a kill
    parser.set_defaults(func=run)
