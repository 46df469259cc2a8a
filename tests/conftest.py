"""Helpers shared by the test modules (``from conftest import gen``).

pytest puts this folder on ``sys.path`` because this file is here, so every test
module, in any subfolder, can import these.
"""

from __future__ import annotations

import torch


def gen(seed: int = 0) -> torch.Generator:
    """A CPU generator seeded with ``seed``: every statistical test draws from one."""
    return torch.Generator().manual_seed(seed)
