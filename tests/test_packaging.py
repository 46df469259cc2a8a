"""The install declares the C kernel without setuptools' "experimental" warning."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]


def test_the_kernel_is_declared_in_setup_py_not_in_pyproject() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert "ext-modules" not in config["tool"]["setuptools"]
    assert 'Extension(\n    "convdrop.ops._kernel"' in (ROOT / "setup.py").read_text()
    assert "optional=True" in (ROOT / "setup.py").read_text()


def test_reading_the_build_config_prints_no_warning() -> None:
    before = sorted(p.name for p in ROOT.iterdir())
    done = subprocess.run([sys.executable, "setup.py", "--version"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.strip().splitlines()[-1].count(".") >= 1  # the version
    assert "experimental" not in done.stderr.lower() and "warning" not in done.stderr.lower()
    assert sorted(p.name for p in ROOT.iterdir()) == before  # nothing written
