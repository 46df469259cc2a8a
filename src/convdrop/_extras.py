"""Clear errors for optional extras: ``convdrop.lab`` without pydantic, say.

The core (ops, layers, placement, models) needs torch and numpy only; the runner and
the pictures need the ``lab`` extra, the torchvision/timm integrations ``vision``.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence


class MissingExtraError(ImportError):
    """An optional dependency of a convdrop subpackage is not installed."""


def _absent(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is None
    except (ImportError, ValueError):  # a parent package is missing, or a broken install
        return True


def missing(modules: Sequence[str]) -> list[str]:
    """The importable names among ``modules`` that cannot be found."""
    return [name for name in modules if _absent(name)]


def require(extra: str, where: str, modules: Sequence[str]) -> None:
    """Raise :class:`MissingExtraError` naming the extra to install if any module is absent."""
    absent = missing(modules)
    if absent:
        raise MissingExtraError(
            f"{where} needs the '{extra}' extra ({', '.join(absent)} not installed): "
            f"pip install 'convdrop[{extra}]'"
        )
