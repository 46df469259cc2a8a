"""Imports flow one way (STYLE rule 11), read from the source without importing it.

Order, top first: ``cli`` > ``bench`` | ``viz`` | ``lab`` (never each other) > ``models``
> ``placement`` > ``layers`` > ``ops``; the root utilities (``_io``, ``errors``, ...)
import no layer. No module imports convdrop inside a function, except the few listed
in ``LAZY``, which wait so that ``convdrop --help`` stays fast.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "convdrop"
RANKS = {"cli": 5, "bench": 4, "viz": 4, "lab": 4, "models": 3, "placement": 2, "layers": 1,
         "ops": 0}
ENTRY_POINTS = {"__init__.py", "__main__.py", "bench/__main__.py"}  # may import upward
LAZY = {("lab/runner.py", "convdrop.lab"), ("cli/compare.py", "convdrop.lab")}  # scipy


def _modules() -> list[Path]:
    return sorted(p for p in SRC.rglob("*.py"))


def _layer(module: str) -> str | None:
    """``convdrop.lab.spec`` -> ``lab``; a root utility -> None."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in RANKS else None


def _imports(tree: ast.Module) -> list[tuple[str, bool]]:
    """(imported convdrop module, inside a function?) for every import of the file."""
    found: list[tuple[str, bool]] = []

    def visit(node: ast.AST, nested: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = nested or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            if isinstance(child, ast.ImportFrom) and child.level == 0 and child.module and \
                    child.module.split(".")[0] == "convdrop":
                if child.module == "convdrop":
                    found.extend((f"convdrop.{alias.name}", inner) for alias in child.names)
                else:
                    found.append((child.module, inner))
            elif isinstance(child, ast.Import):
                found.extend((a.name, inner) for a in child.names if a.name.startswith("convdrop"))
            visit(child, inner)

    visit(tree, False)
    return found


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(SRC)))
def test_imports_go_down_and_stay_at_the_top(path: Path) -> None:
    name = str(path.relative_to(SRC))
    own = _layer("convdrop." + name.replace("/", "."))
    for target, nested in _imports(ast.parse(path.read_text(encoding="utf-8"))):
        if nested:
            assert (name, target.rsplit(".", 1)[0]) in LAZY or (name, target) in LAZY, \
                f"{name} imports {target} inside a function"
        if name in ENTRY_POINTS or name.endswith("/__init__.py") and own is None:
            continue
        layer = _layer(target)
        if own is None:
            assert layer is None, f"root utility {name} imports the layer {target}"
        elif layer is not None and layer != own:
            assert RANKS[layer] < RANKS[own], f"{name} ({own}) imports {target} ({layer})"
