"""Reading a spec file: TOML checked to be UTF-8, shallow and made of known tables.

``[experiment]`` and ``[methods.NAME]`` for :func:`read_toml` (compare, train);
:mod:`convdrop.lab.sweep.expand` reads ``[experiment]`` and ``[sweep]`` with
:func:`load_toml`. Every problem is one :class:`~convdrop.errors.SpecError` line naming
the file.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from convdrop import _io
from convdrop.errors import MissingFileError, SpecError, file_problem

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = ["load_toml", "read_toml"]


def load_toml(path: Path, tables: tuple[str, ...], expected: str) -> dict[str, Any]:
    """A spec file's tables; every problem (missing, not TOML, not UTF-8, nested too
    deeply, a table not in ``tables``) is a one-line error naming the file."""
    path = Path(path)
    unusable = _io.unusable(path)
    if unusable:
        raise SpecError(f"spec file {str(path)!r} cannot be used ({unusable})")
    problem = file_problem(path)  # a directory or /dev/null is not "missing"
    if problem == "does not exist":
        raise MissingFileError(f"spec file {str(path)!r} does not exist")
    if problem:
        raise SpecError(f"spec file {str(path)!r} {problem}")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as err:
        raise SpecError(f"spec file {str(path)!r} is not valid TOML: {err}") from err
    except UnicodeDecodeError as err:
        raise SpecError(f"spec file {str(path)!r} is not UTF-8 text: {err}") from None
    except RecursionError:
        raise SpecError(f"spec file {str(path)!r} is nested too deeply to be a spec") from None
    unknown = set(raw) - set(tables)
    if unknown:
        raise SpecError(f"spec file {str(path)!r}: unknown table(s) {sorted(unknown)}; "
                        f"expected {expected}")
    return raw


def read_toml(path: Path) -> dict[str, Any]:
    """Parse a spec file into a flat dict of spec fields; only known tables are allowed."""
    raw = load_toml(path, ("experiment", "methods"), "[experiment] and [methods.NAME]")
    fields = dict(raw.get("experiment", {}))
    if "method_options" in fields:
        raise SpecError("spec key experiment.method_options: use [methods.NAME] tables instead")
    if "methods" in raw:
        fields["method_options"] = raw["methods"]
    return fields
