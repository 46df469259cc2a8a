"""Worker processes that die with their parent: the pool behind ``compare --workers N``.

:func:`run_jobs` spawns N processes that take jobs from a queue and send back
progress events and results. No process may outlive the runner, however it ends:

* on every exit path of :func:`run_jobs` (an error, Ctrl-C, SIGTERM turned into
  ``KeyboardInterrupt`` by :func:`sigterm_as_interrupt`) the parent terminates, then
  kills, its workers;
* when the parent dies without cleaning up (``kill -9``), each worker dies too: on
  Linux through ``PR_SET_PDEATHSIG`` (the kernel sends it SIGKILL), and everywhere
  through a thread that exits the worker once its parent pid changes.

There is no multiprocessing manager process; the queues are plain pipes, so the
resource tracker ends when the last of these processes does. Workers ignore SIGINT:
Ctrl-C reaches the whole process group, and the parent decides what stops.

Workers are not daemon processes, because a run may start its own children (the
DataLoader workers of a streamed folder), which multiprocessing forbids a daemon. What
``daemon`` would have given, no worker outliving the parent, the two mechanisms above
already give; a DataLoader worker ends when its run worker does (PyTorch's own watch on
its parent).
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import pickle
import queue
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch

from convdrop.errors import UserError

__all__ = ["WorkerDied", "die_with_parent", "run_jobs", "sigterm_as_interrupt"]

PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
ORPHAN_POLL_S = 0.5


class WorkerDied(UserError, RuntimeError):
    """A worker process ended without sending its result (killed, out of memory)."""


def _watch_parent(parent: int) -> None:
    while True:
        if os.getppid() != parent:
            os._exit(1)  # no cleanup: the files on disk are consistent after every write
        time.sleep(ORPHAN_POLL_S)


def die_with_parent(parent: int) -> None:
    """Make this process end when process ``parent`` (its parent) ends."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):  # pragma: no cover - no prctl: the thread does it
            pass
    if os.getppid() != parent:  # it died before we asked
        os._exit(1)
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True,
                     name="convdrop-orphan-check").start()


def _portable(err: BaseException) -> tuple[BaseException | None, str]:
    """The error if it survives pickling, and its traceback as text."""
    text = "".join(traceback.format_exception(type(err), err, err.__traceback__))
    try:
        return pickle.loads(pickle.dumps(err)), text
    except Exception:  # noqa: BLE001 - an exception class with odd arguments
        return None, text


def _serve(job: Callable[..., Any], jobs: Any, events: Any, parent: int, threads: int) -> None:
    """Worker main loop: run jobs until the ``None`` sentinel; every message goes to ``events``."""
    die_with_parent(parent)
    # a spawned process inherits "spawn" as its default start method; a run's own processes
    # (DataLoader workers) start as they would in the runner (the platform's default, fork
    # on Linux), not as fresh interpreters that import torch for every loader of every epoch
    multiprocessing.set_start_method(None, force=True)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(threads)
    while (item := jobs.get()) is not None:
        index, args = item
        try:
            result = job(*args, report=lambda value: events.put(("event", value)))
        except BaseException as err:  # noqa: BLE001 - sent to the parent, which raises it
            events.put(("error", index, *_portable(err)))
            return
        events.put(("done", index, result))


def _stop(processes: Sequence[Any]) -> None:
    """Terminate, then kill, every process still running, and reap them all.

    A second interrupt (Ctrl-C, SIGTERM) while it runs does not cut it short: workers
    are not daemons, so one left running would keep the runner from exiting."""
    while True:
        try:
            for process in processes:
                if process.is_alive():
                    process.terminate()
            for process in processes:
                process.join(5)
                if process.is_alive():
                    process.kill()
                    process.join()
            return
        except KeyboardInterrupt:
            continue  # the interrupt already on its way out is raised once they are gone


def _raise_error(message: tuple, describe: Callable[[int], str]) -> None:
    _, index, err, text = message
    if isinstance(err, UserError):
        raise err
    raise RuntimeError(f"{describe(index)} failed in a worker process:\n{text}")


def run_jobs(job: Callable[..., Any], jobs: Sequence[tuple], *, processes: int, threads: int,
             on_event: Callable[[Any], None], describe: Callable[[int], str],
             idle: Callable[[], None] | None = None) -> list[Any]:
    """``[job(*args, report=...) for args in jobs]`` over ``processes`` spawned workers.

    ``job`` must be a module-level function; ``report(value)`` in a worker calls
    ``on_event(value)`` here. A job's :class:`UserError` is raised here as it is; any
    other error becomes a ``RuntimeError`` with the worker's traceback. ``describe(i)``
    names job ``i`` in messages. ``idle()`` is called every half second without news; an
    error it raises (as from ``on_event``) stops the workers and goes on up.
    """
    context = multiprocessing.get_context("spawn")
    todo, events = context.Queue(), context.Queue()
    for index, args in enumerate(jobs):
        todo.put((index, args))
    for _ in range(processes):
        todo.put(None)
    workers = [context.Process(target=_serve, daemon=False, name=f"convdrop-worker-{i}",
                               args=(job, todo, events, os.getpid(), threads))
               for i in range(processes)]
    results: dict[int, Any] = {}
    try:
        with _sigint_ignored():  # inherited: a worker importing torch ignores Ctrl-C too
            for worker in workers:
                worker.start()
        while len(results) < len(jobs):
            try:
                message = events.get(timeout=0.5)
            except queue.Empty:
                if idle is not None:
                    idle()
                problem = _problem(workers, len(results), len(jobs))
                if problem is None:
                    continue
                try:  # what a worker sent just before it ended may still be on its way
                    message = events.get(timeout=2)
                except queue.Empty:
                    raise problem from None
            if message[0] == "event":
                on_event(message[1])
            elif message[0] == "done":
                results[message[1]] = message[2]
            else:
                _raise_error(message, describe)
    finally:
        _stop(workers)
        for channel in (todo, events):
            channel.cancel_join_thread()
            channel.close()
    return [results[i] for i in range(len(jobs))]


def _problem(workers: Sequence[Any], done: int, total: int) -> WorkerDied | None:
    """A :class:`WorkerDied` when a worker died, or all ended with jobs left; else None."""
    dead = [w for w in workers if w.exitcode not in (None, 0)]
    if not dead and any(w.exitcode is None for w in workers):
        return None
    code = dead[0].exitcode if dead else 0
    how = f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"
    return WorkerDied(f"a worker process {how} before its run finished ({done} of {total} "
                      "runs done); finished runs are kept: run the same command again to "
                      "resume the others")


@contextmanager
def _sigint_ignored() -> Iterator[None]:
    """SIGINT ignored within the block, so processes started in it begin with it ignored,
    before Python would print a traceback for it in them. Only the main thread may change
    a handler; another thread (a search running trials side by side) blocks SIGINT in its
    own mask instead, which the processes it starts inherit."""
    if threading.current_thread() is not threading.main_thread():
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            yield
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises ``KeyboardInterrupt`` (main thread only), so the
    cleanup of every ``finally`` runs: workers stopped, locks released."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
