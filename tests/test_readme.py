"""Every ```python block of the README runs as written, in a fresh namespace and folder.

Signature listings are fenced as ```text, so a python fence is a promise that the
block runs. Blocks run in order, each on its own (none relies on another's names).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

README = Path(__file__).resolve().parents[1] / "README.md"
FENCE = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)


def python_blocks() -> list[str]:
    return FENCE.findall(README.read_text(encoding="utf-8"))


def test_the_readme_has_python_blocks() -> None:
    assert len(python_blocks()) >= 3


def test_no_python_fence_is_a_signature_listing() -> None:
    for block in python_blocks():
        compile(block, "README.md", "exec")  # a listing of signatures is a SyntaxError


@pytest.mark.parametrize("index", range(len(python_blocks())))
def test_readme_block_runs(index: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                           capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)  # a block may write files (a checkpoint)
    torch.manual_seed(0)
    exec(compile(python_blocks()[index], f"README.md python block {index}", "exec"), {})
    capsys.readouterr()
