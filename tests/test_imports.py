"""No convdrop import hides inside a function (STYLE rule 11), read from the source.

The layer order itself (``cli`` > ``bench`` | ``viz`` | ``lab`` > ``models`` >
``placement`` > ``layers`` > ``ops``) and the absence of cycles are import-linter's
contracts in pyproject.toml, run by ``make test``; it cannot see *where* an import sits.
An import inside a function is how a cycle gets dodged, so none is allowed except the
few in ``LAZY``, which wait so that ``convdrop --help`` stays fast.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "convdrop"
LAZY = {("lab/runs/runner.py", "convdrop.lab"), ("cli/compare.py", "convdrop.lab"),  # scipy
        ("cli/sweep.py", "convdrop.lab")}


def _modules() -> list[Path]:
    return sorted(p for p in SRC.rglob("*.py"))


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
def test_imports_stay_at_the_top(path: Path) -> None:
    name = str(path.relative_to(SRC))
    for target, nested in _imports(ast.parse(path.read_text(encoding="utf-8"))):
        if nested:
            assert any(name == file and (target + ".").startswith(package + ".")
                       for file, package in LAZY), f"{name} imports {target} inside a function"
