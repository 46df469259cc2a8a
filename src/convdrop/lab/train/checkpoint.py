"""Checkpoint files: a checked header, then the ``torch.save`` payload it vouches for.

Layout of ``checkpoint.pt``::

    CONVDROP-CHECKPOINT\\n
    {"format": 2, "run_key": ..., "seed": ..., "epoch": ..., "data_listing": ...,
     "bytes": N, "sha256": ...}\\n
    <N bytes: torch.save of the trainer's state>

Reading one back (:func:`read_checkpoint`) checks, in order: the magic line and
format version, the payload's size and SHA-256 (truncation, bit rot, a half-copied
file), the run key and seed (a checkpoint of other settings), the epoch (an int in
1..epochs, equal to the payload's), that ``metrics.csv`` holds exactly the rows of
those epochs (plus at most the one written just before a kill), and, when resuming, that
an image folder still lists the images the run started on (``data_listing``). The payload loads with
``weights_only=True`` only, so a crafted file cannot run code. Any failure is one
:class:`convdrop.errors.RunFolderError` naming the file and what to do.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Any

import torch

from convdrop import _io
from convdrop.errors import RunFolderError
from convdrop.lab.train.store import RunPaths, check_epochs, check_listing, read_metrics

MAGIC = b"CONVDROP-CHECKPOINT\n"
FORMAT = 2
REQUIRED = ("model", "optimizer", "lr_scheduler", "generator", "torch_rng")


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Atomically write ``state`` (with its ``run_key``, ``seed`` and ``epoch``) and its header."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    payload = buffer.getvalue()
    header = {"format": FORMAT, "run_key": state["run_key"], "seed": state["seed"],
              "epoch": state["epoch"], "data_listing": state.get("data_listing"),
              "bytes": len(payload),
              "sha256": hashlib.sha256(payload).hexdigest()}
    head = MAGIC + json.dumps(header).encode() + b"\n"
    _io.atomic_write(path, lambda handle: (handle.write(head), handle.write(payload)))


def _split(paths: RunPaths, data: bytes) -> tuple[dict[str, Any], bytes]:
    """The header and the payload, both checked for integrity."""
    path = paths.checkpoint
    if not data.startswith(MAGIC):
        problem = "empty" if not data else "not a convdrop checkpoint of this version"
        raise paths.broken(path, f"{problem} (no {MAGIC.decode().strip()} header)")
    line, _, payload = data[len(MAGIC):].partition(b"\n")
    try:
        header = json.loads(line)
    except (ValueError, RecursionError):
        header = None
    if not isinstance(header, dict):
        raise paths.broken(path, "its header is not valid JSON (corrupt or truncated)")
    if header.get("format") != FORMAT:
        raise paths.broken(path, f"format {header.get('format')!r}, but this convdrop reads "
                           f"format {FORMAT}")
    if header.get("bytes") != len(payload):
        raise paths.broken(path, f"truncated or padded: {len(payload)} payload bytes, "
                           f"the header says {header.get('bytes')}")
    if header.get("sha256") != hashlib.sha256(payload).hexdigest():
        raise paths.broken(path, "its payload does not match its checksum (corrupt)")
    return header, payload


def _check_identity(paths: RunPaths, header: dict[str, Any], run_key: str, seed: int,
                    epochs: int) -> int:
    for key, mine in (("run_key", run_key), ("seed", seed)):
        if header.get(key) != mine:
            raise RunFolderError(
                f"{paths.checkpoint} was written by a run with {key} {header.get(key)!r}, but "
                f"this run has {key} {mine!r}; use the same settings, or {paths.remedy()}")
    epoch = header.get("epoch")
    if type(epoch) is not int or not 1 <= epoch <= epochs:
        raise paths.broken(paths.checkpoint, f"epoch {epoch!r} is not an epoch of this "
                           f"{epochs}-epoch run")
    return epoch


def load_checkpoint(path: Path) -> dict[str, Any] | None:
    """The state saved in ``path`` after the integrity checks (None if there is no file)."""
    loaded = _load(RunPaths(Path(path).parent), Path(path))
    return None if loaded is None else loaded[1]


def _load(paths: RunPaths, path: Path) -> tuple[dict[str, Any], dict[str, Any]] | None:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as err:
        raise paths.broken(path, f"cannot read it ({err.strerror or err})") from None
    header, payload = _split(paths, data)
    try:
        state = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - an unpickler fails in many ways
        raise paths.broken(path, f"its payload does not load ({type(err).__name__})") from None
    missing = [key for key in REQUIRED if not isinstance(state, dict) or key not in state]
    if missing:
        raise paths.broken(path, f"no {', '.join(missing)} in it")
    if state.get("epoch") != header["epoch"]:
        raise paths.broken(path, f"payload epoch {state.get('epoch')!r} != header epoch "
                           f"{header['epoch']!r}")
    return header, state


def read_header(paths: RunPaths) -> dict[str, Any] | None:
    """The header of the run's checkpoint, read without its payload (None if there is no
    checkpoint or no header): what a check of every run can afford for a large model."""
    try:
        with open(paths.checkpoint, "rb") as handle:
            head = handle.read(len(MAGIC) + 4096)
    except OSError:
        return None
    if not head.startswith(MAGIC):
        return None
    try:
        header = json.loads(head[len(MAGIC):].partition(b"\n")[0])
    except (ValueError, RecursionError):
        return None
    return header if isinstance(header, dict) else None


def read_checkpoint(paths: RunPaths, *, run_key: str, seed: int, epochs: int,
                    listing: str | None = None, data: str = "",
                    ) -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
    """A checked checkpoint of this run and the ``metrics.csv`` rows of its epochs, or None;
    ``listing``, when given, is the data folder's listing now, which must be the one the
    checkpoint was written on (``data`` names the folder in the message)."""
    loaded = _load(paths, paths.checkpoint)
    if loaded is None:
        return None
    header, state = loaded
    epoch = _check_identity(paths, header, run_key, seed, epochs)
    check_listing(paths, paths.checkpoint, header.get("data_listing"), listing, data,
                  finished=False)
    rows = read_metrics(paths)
    check_epochs(paths, rows, epoch, exact=False)
    return state, rows[:epoch]
