"""One writer per folder: an exclusive lock file naming the process that holds it.

``compare`` holds ``OUT/.convdrop.lock`` while it runs, and every run holds one in its
own folder while it trains, so two runners on one ``--out`` (or a ``train`` on a run that
a ``compare`` is training) never write the same files. The lock is an ``flock`` on the
file, which the kernel drops when its holder dies, however it dies; the file records
the holder's pid, host and start time for the message. A lock file that no process holds
any more (on this host) is taken over with a warning that says what is true: its pid no
longer runs, or (told by the recorded start time) now belongs to another process. So is
one that names the same ``owner`` on any host: a retry of the same run by the same
command, whose first attempt died with its node (``--executor ray``). Taking a folder's
lock also deletes the temporary files that a killed writer left there
(:func:`convdrop._io.remove_stale_temps`).
"""

from __future__ import annotations

import json
import os
import socket
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from convdrop import _io
from convdrop.errors import RunFolderError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: the pid check alone
    fcntl = None  # type: ignore[assignment]

LOCK_NAME = ".convdrop.lock"


def _holder(path: Path) -> dict[str, Any]:
    """What a lock file says about its holder ({} if unreadable)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return {}
    return data if isinstance(data, dict) else {}


def alive(pid: Any) -> bool:
    """Whether a process ``pid`` runs on this machine (another user's counts)."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def _start_time(pid: Any) -> int | None:
    """When process ``pid`` started, in clock ticks after boot (``/proc/PID/stat`` field 22;
    Linux), or None: with the pid it tells one process from a later one that reuses it."""
    if not isinstance(pid, int) or pid <= 0:
        return None
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8", errors="replace")
        return int(stat[stat.rindex(")") + 2:].split()[19])  # fields 3.. follow "(comm) "
    except (OSError, ValueError, IndexError):
        return None


def _stale_warning(path: Path, previous: dict[str, Any]) -> str:
    """What is true of a lock that no process holds any more (its flock is free)."""
    pid, started = previous.get("pid"), previous.get("started")
    if not alive(pid):
        return f"took over the stale lock {path} of pid {pid}, which no longer runs"
    if started is not None and started == _start_time(pid):
        return f"took over the lock {path} of pid {pid}, which still runs but no longer holds it"
    return (f"took over the stale lock {path} of pid {pid}: the process that held it ended "
            f"without removing it, and pid {pid} now belongs to another process")


def _is_mine(previous: dict[str, Any], mine: dict[str, Any]) -> bool:
    """The lock file names this very process (a lock file without a start time, from an
    older convdrop, by its pid and host alone)."""
    return (previous.get("pid") == mine["pid"] and previous.get("host") == mine["host"]
            and previous.get("started", mine["started"]) == mine["started"])


def _still_linked(fd: int, path: Path) -> bool:
    try:
        return os.fstat(fd).st_ino == path.stat().st_ino
    except FileNotFoundError:
        return False


def _refusal(folder: Path, holder: dict[str, Any], hint: str) -> RunFolderError:
    who = f"pid {holder.get('pid', '?')} on host {holder.get('host', '?')}"
    since = holder.get("since")
    when = f" since {since}" if since else ""
    return RunFolderError(f"{folder} is in use by another convdrop process ({who}{when}); "
                          f"wait for it to end, or {hint}")


def _open_locked(path: Path, folder: Path, hint: str) -> tuple[int, dict[str, Any]]:
    """The lock file's descriptor, flock-ed, and what it said before; refuses if held."""
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise _io.write_failure(path, err) from err
        previous = _holder(path)
        if fcntl is None:
            return fd, previous
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise _refusal(folder, previous, hint) from None
        if _still_linked(fd, path):
            return fd, previous
        os.close(fd)  # the holder released (and removed) it as we opened it: again


def _take(folder: Path, hint: str, owner: str | None) -> int:
    """Lock ``folder`` and record this process in the lock file; returns its descriptor."""
    path = folder / LOCK_NAME
    fd, previous = _open_locked(path, folder, hint)
    mine = {"pid": os.getpid(), "host": socket.gethostname(), "started": _start_time(os.getpid())}
    try:
        if previous and not _is_mine(previous, mine):
            retry = owner is not None and previous.get("owner") == owner
            if previous.get("host") != mine["host"] and not retry:
                raise _refusal(folder, previous, f"{hint} (on another host it cannot be "
                               f"checked; if it is not running, delete {path})")
            if fcntl is None and alive(previous.get("pid")):
                raise _refusal(folder, previous, hint)
            warnings.warn(_stale_warning(path, previous), UserWarning, stacklevel=4)
        record = {**mine, "since": time.strftime("%Y-%m-%d %H:%M:%S")}
        if owner is not None:
            record["owner"] = owner
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(record).encode(), 0)
    except OSError as err:  # a full disk: no lock file left behind, empty or stale
        path.unlink(missing_ok=True)
        os.close(fd)
        raise _io.write_failure(path, err) from err
    except BaseException:
        os.close(fd)
        raise
    return fd


@contextmanager
def hold(folder: Path, *, hint: str = "choose another --out",
         owner: str | None = None) -> Iterator[None]:
    """Hold ``folder``'s lock (creating the folder's lock file) for the ``with`` block.

    Raises :class:`RunFolderError` naming the holder when a live process holds it;
    ``hint`` is what the message suggests instead of waiting. ``owner`` names the work
    (a command's token and a run): a lock left with the same owner is taken over from
    any host, since the flock shows that nobody holds it any more.
    """
    folder = Path(folder)
    fd = _take(folder, hint, owner)
    try:
        _io.remove_stale_temps(folder)
        yield
    finally:
        (folder / LOCK_NAME).unlink(missing_ok=True)
        os.close(fd)
