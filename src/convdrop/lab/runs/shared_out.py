"""``--out`` as a folder that every node sees: the token check, and progress read from it.

Runs on other machines write their files into ``--out``, so it must be the same folder
on every node (NFS, a cluster filesystem), as torchrun checkpoints must. Before its
tasks start, the driver writes a random token into ``OUT/.convdrop-token``; each task
reads it back before it trains. A node that sees another folder at that path (a local
disk, a stale copy, another mount point) fails in one line that names the node and the
path, instead of training into a folder nobody will read.

:class:`Meter` turns the runs' ``metrics.csv`` (one row per finished epoch, written
atomically) into the progress bar's advances, wherever the runs execute.
"""

from __future__ import annotations

import secrets
from pathlib import Path

from convdrop import _io
from convdrop.errors import OutputError
from convdrop.lab.train.store import RunPaths

__all__ = ["TOKEN_NAME", "Meter", "check_token", "remove_token", "write_token"]

TOKEN_NAME = ".convdrop-token"


def write_token(out: Path) -> str:
    """Write a fresh token into ``out`` and return it."""
    token = secrets.token_hex(16)
    _io.write_text(Path(out) / TOKEN_NAME, token + "\n")
    return token


def remove_token(out: Path) -> None:
    """Delete the token (the runs are over)."""
    (Path(out) / TOKEN_NAME).unlink(missing_ok=True)


def check_token(out: Path, token: str, *, where: str, run: str) -> None:
    """Raise :class:`OutputError` unless ``out`` holds ``token``; ``where`` names the node."""
    path = Path(out) / TOKEN_NAME
    try:
        found = path.read_text(encoding="utf-8").strip()
    except OSError as err:
        problem = f"cannot read {path} ({err.strerror or type(err).__name__})"
    else:
        if found == token:
            return
        problem = f"{path} holds another command's token"
    raise OutputError(f"run {run} on {where}: {problem}, which the command wrote just before; "
                      f"--out {out} must be the same folder on every node (a shared "
                      "filesystem, at the same path)")


def _rows(path: Path) -> int:
    try:
        return max(0, path.read_bytes().count(b"\n") - 1)  # the header line is not an epoch
    except OSError:
        return 0


class Meter:
    """Epochs finished by a grid's runs, read from their ``metrics.csv`` in ``out``.

    :meth:`advance` returns the epochs finished since its last call, so a run that resumes
    (or a retried task) is never counted twice; a file is read again only when it changed.
    """

    def __init__(self, out: Path, runs: list[tuple[str, int]], epochs: int) -> None:
        self.paths = [RunPaths.of(out, method, seed).metrics for method, seed in runs]
        self.epochs = epochs
        self.seen: dict[int, tuple[tuple[int, int, int], int]] = {}  # run -> (file's id, rows)
        self.counted = 0

    def _done(self, index: int) -> int:
        path = self.paths[index]
        try:
            stat = path.stat()
        except OSError:
            return 0
        version = (stat.st_ino, stat.st_size, stat.st_mtime_ns)  # each write is a new file
        known = self.seen.get(index)
        if known is None or known[0] != version:
            known = self.seen[index] = (version, min(self.epochs, _rows(path)))
        return known[1]

    def advance(self, finished: set[int]) -> int:
        """Epochs since the last call; runs in ``finished`` count all their epochs."""
        total = sum(self.epochs if i in finished else self._done(i)
                    for i in range(len(self.paths)))
        step, self.counted = max(0, total - self.counted), max(total, self.counted)
        return step
