"""``--weights PATH``: a local ``state_dict`` file, read safely, fitted strictly, hashed.

Reading (:func:`read_state_dict`): the path must be a regular, non-empty file; it loads
with ``weights_only=True``, so a pickle that would run code is refused in one line, and
a file ``torch.save`` did not write is named as such. Fitting (:func:`load_weights`):
every tensor must fit the model, except the two that depend on the data, the classifier
(its number of classes) and the first convolution's input channels. Those keep their
fresh initialization and are returned by name, for the console and the report
(:func:`fresh_note`); any other difference (another width, another architecture) is
refused rather than training a model that is mostly random. Hashing
(:func:`weights_sha256`): the file's bytes are part of a run's settings hash, so
overwriting the file with other weights is a run of other settings, never reused.
"""

from __future__ import annotations

import functools
import hashlib
import os
import pickle
import re
import stat
import warnings
from pathlib import Path

import torch
from torch import nn

from convdrop.errors import MissingFileError, SpecError, file_problem

__all__ = ["fresh_keys", "fresh_note", "load_weights", "read_state_dict",
           "weights_sha256"]

def _load_problem(err: Exception) -> str:
    """Why ``torch.load(..., weights_only=True)`` failed, in a clause (no docs URL)."""
    text = str(err)
    if isinstance(err, pickle.UnpicklingError) and "weights only" in text.lower():
        found = re.search(r"unsupported (?:global:\s*)?GLOBAL\s+([\w.]+)", text, re.IGNORECASE)
        detail = f" (GLOBAL {found.group(1)})" if found else ""
        return (f"it holds Python objects a weights-only load refuses{detail}: loading it "
                "could run code, so convdrop does not; save a state_dict of tensors instead")
    first = text.strip().split(". ")[0].splitlines()[0] if text.strip() else "no detail"
    return f"not a file torch.save wrote ({type(err).__name__}: {first})"


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a local ``state_dict`` file (also inside ``{"state_dict": ...}`` or
    ``{"model": ...}``); every problem is one line naming the file."""
    path = Path(path)
    problem = file_problem(path)
    if problem == "does not exist":
        raise MissingFileError(f"weights file {str(path)!r} does not exist")
    if problem is None and path.stat().st_size == 0:
        problem = "is empty (0 bytes)"
    if problem:
        raise SpecError(f"weights file {str(path)!r} {problem}")
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - pickle, zip or format errors: not a checkpoint
        raise SpecError(f"weights {str(path)!r} could not be read: {_load_problem(err)}") \
            from None
    for key in ("state_dict", "model"):  # common checkpoint wrappers
        if isinstance(raw, dict) and isinstance(raw.get(key), dict):
            raw = raw[key]
    if not isinstance(raw, dict) or not all(isinstance(v, torch.Tensor) for v in raw.values()):
        raise SpecError(f"weights {str(path)!r} is not a state_dict (a dict of tensors)")
    return raw


def _classifier(model: nn.Module) -> str | None:
    """The module path of the classifier: timm's ``get_classifier()``, else the last Linear."""
    get = getattr(model, "get_classifier", None)
    head = get() if callable(get) else None
    found = None
    for path, module in model.named_modules():
        if module is head and path:
            return path
        if isinstance(module, nn.Linear):
            found = path
    return found


def _first_conv(model: nn.Module) -> str | None:
    return next((p for p, m in model.named_modules() if isinstance(m, nn.Conv2d)), None)


def _may_differ(key: str, mine: torch.Size, theirs: torch.Size, classifier: str | None,
                first_conv: str | None) -> bool:
    """The classifier's tensors (another number of classes), and the first conv's kernel
    when only its input channels differ (another number of image channels)."""
    module = key.rpartition(".")[0]
    if classifier is not None and module == classifier:
        return True
    same_but_channels = (len(mine) == len(theirs) > 1 and mine[0] == theirs[0]
                         and mine[2:] == theirs[2:])
    return key == f"{first_conv}.weight" and same_but_channels


def fresh_keys(model: nn.Module, state: dict[str, torch.Tensor], path: Path) -> list[str]:
    """The keys of ``state`` whose shapes differ from ``model``'s and may stay fresh;
    refuses any other shape difference in one line."""
    own = model.state_dict()
    differ = sorted(k for k, t in state.items() if k in own and own[k].shape != t.shape)
    classifier, conv = _classifier(model), _first_conv(model)
    refused = [k for k in differ if not _may_differ(k, own[k].shape, state[k].shape,
                                                    classifier, conv)]
    if refused:
        shown = "; ".join(f"{k} {tuple(state[k].shape)} in the file, {tuple(own[k].shape)} "
                          "in the model" for k in refused[:3])
        raise SpecError(
            f"weights {str(path)!r} do not fit the model: {len(refused)} of {len(own)} tensors "
            f"have other shapes ({shown}{'; ...' if len(refused) > 3 else ''}); only the "
            f"classifier ({classifier or 'none found'}) and the first conv's input channels "
            "may differ (another number of classes or channels); use weights of this model "
            "and model_options")
    return differ


def load_weights(model: nn.Module, path: str | Path) -> list[str]:
    """Load a local state_dict into ``model``; returns the keys left fresh (see the module)."""
    path = Path(path)
    state = read_state_dict(path)
    left_out = fresh_keys(model, state, path)
    with warnings.catch_warnings():  # a model on the meta device (the preflight) copies nothing
        warnings.filterwarnings("ignore", message=".*copying from a non-meta parameter")
        missing, unexpected = model.load_state_dict(
            {k: t for k, t in state.items() if k not in left_out}, strict=False)
    missing = [k for k in missing if k not in left_out]
    if missing or unexpected:
        raise SpecError(f"weights {str(path)!r} do not fit the model: missing keys "
                        f"{missing[:5]}, unexpected keys {unexpected[:5]}")
    return left_out


def fresh_note(path: str, fresh: dict[str, list[str]]) -> str:
    """One line on what ``--weights`` loaded: every tensor, or which keys stayed fresh
    (per method when the methods' models differ)."""
    groups = {tuple(keys) for keys in fresh.values()}
    if groups <= {()}:
        return f"weights {path}: every tensor loaded"
    if len(groups) == 1:
        (keys,) = groups
        return (f"weights {path}: {', '.join(keys)} kept their fresh initialization (shapes "
                "differ for this data); every other tensor loaded")
    parts = [f"{method}: {', '.join(keys) or 'none'}" for method, keys in fresh.items()]
    return (f"weights {path}: kept their fresh initialization (shapes differ for this "
            f"data), {'; '.join(parts)}; every other tensor loaded")


@functools.lru_cache(maxsize=8)
def _sha256(path: str, size: int, mtime_ns: int, ctime_ns: int, inode: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(functools.partial(handle.read, 1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def weights_sha256(path: str) -> str | None:
    """SHA-256 of the file's bytes (None if it cannot be read: loading it says why);
    read once per version of the file, told apart by its size, inode and change times (a
    rewrite of the same size within one clock tick of the file system would look the same)."""
    try:
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode):
            return None
        return _sha256(os.path.abspath(path), info.st_size, info.st_mtime_ns, info.st_ctime_ns,
                       info.st_ino)
    except OSError:
        return None
