"""convdrop.lab.runs.blocks: a DropBlock block larger than every map it meets, said once."""

from __future__ import annotations

import pytest
import torch

from convdrop.lab.runs import preflight as pf
from convdrop.lab.runs.blocks import oversized_blocks, oversized_warning
from convdrop.lab.spec.experiment import ExperimentSpec
from convdrop.models import create


@pytest.mark.parametrize("block, expected", [(3, {}), (32, {}), (33, {33: 32}),
                                             (2**63 - 1, {2**63 - 1: 32})])
def test_only_blocks_beyond_every_map_side_are_found(block, expected):
    with torch.device("meta"):
        model = create("simple_cnn", 10, 3, width=4, dropblock=0.1, block_size=block)
        assert oversized_blocks(model, torch.empty(1, 3, 32, 32)) == expected


def test_the_warning_is_one_line_naming_each_block_its_largest_map_and_methods():
    assert oversized_warning({}) is None
    line = oversized_warning({1000: (32, ["a", "b", "c", "d", "e"]), 64: (16, ["f"])})
    assert "\n" not in line
    assert line.startswith("block_size 64 (largest map side 16, in f); 1,000 (largest map "
                           "side 32, in a, b, c and 2 more) is larger than every feature map")
    assert "clips it to each map" in line


def test_the_preflight_says_it_once_after_every_check(tmp_path, recwarn):
    """A sweep-like spec: block 1000 at three rates and block 3: one warning line."""
    tables = {f"b{k}": {"base": "dropblock", "p": p, "block_size": k}
              for k, p in ((1000, 0.1), (3, 0.1))}
    tables.update({f"b1000-{p}": {"base": "dropblock", "p": p, "block_size": 1000}
                   for p in (0.2, 0.3)})
    spec = ExperimentSpec(data="synthetic", methods=list(tables), method_options=tables,
                          model_options={"width": 4}, train_size=30)
    pf.preflight(spec, tmp_path / "out", [0])
    (warning,) = [w for w in recwarn if "block_size" in str(w.message)]
    assert str(warning.message).startswith("block_size 1,000 (largest map side 32, in b1000)")
    assert not (tmp_path / "out").exists()
