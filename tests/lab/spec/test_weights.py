"""--weights PATH (convdrop.lab.spec.weights): read safely, fitted strictly, hashed by content.

A ``simple_cnn`` checkpoint is loaded into models that differ from it in one way at a
time: the number of classes (the classifier stays fresh), of image channels (the first
conv stays fresh), the width (refused: most tensors would stay random), and files that
are not checkpoints at all (one line each, saying what the path is).
"""

from __future__ import annotations

import os
import pickle
import warnings
from pathlib import Path

import pytest
import torch

from convdrop.errors import MissingFileError, SpecError
from convdrop.lab.spec.weights import fresh_note, load_weights, read_state_dict, weights_sha256
from convdrop.models import create


def _cnn(classes: int = 3, channels: int = 3, width: int = 4) -> torch.nn.Module:
    torch.manual_seed(classes * 100 + channels * 10 + width)
    return create("simple_cnn", num_classes=classes, in_channels=channels, width=width)


@pytest.fixture
def saved(tmp_path: Path) -> tuple[Path, torch.nn.Module]:
    """A width-4, 10-class, 3-channel checkpoint."""
    source = _cnn(classes=10)
    path = tmp_path / "w.pt"
    torch.save(source.state_dict(), path)
    return path, source


def test_another_number_of_classes_leaves_only_the_classifier_fresh(saved):
    path, source = saved
    model = _cnn(classes=3)
    fresh = load_weights(model, path)
    assert fresh == ["head.fc2.bias", "head.fc2.weight"]
    for key, tensor in model.state_dict().items():
        assert torch.equal(tensor, source.state_dict()[key]) != (key in fresh), key


def test_another_number_of_channels_leaves_only_the_first_conv_fresh(saved):
    path, source = saved
    model = _cnn(classes=10, channels=1)
    assert load_weights(model, path) == ["stage1.conv1.weight"]
    assert torch.equal(model.stage1.conv1.bias, source.stage1.conv1.bias)


def test_another_width_is_refused_naming_the_tensors_that_differ(tmp_path):
    path = tmp_path / "w32.pt"
    torch.save(_cnn(width=32).state_dict(), path)
    model = _cnn(width=16)
    before = {k: t.clone() for k, t in model.state_dict().items()}
    with pytest.raises(SpecError) as err:
        load_weights(model, path)
    text = str(err.value)
    assert "do not fit the model: 13 of 16 tensors have other shapes" in text
    assert "stage1.conv1.bias (32,) in the file, (16,) in the model" in text
    assert "only the classifier (head.fc2) and the first conv's input channels" in text
    assert all(torch.equal(t, before[k]) for k, t in model.state_dict().items())  # untouched


def test_a_first_conv_with_other_output_channels_is_not_a_channel_change(tmp_path):
    state = _cnn().state_dict()
    state["stage1.conv1.weight"] = torch.zeros(5, 3, 3, 3)
    torch.save(state, tmp_path / "w.pt")
    with pytest.raises(SpecError, match=r"1 of 16 tensors .*stage1.conv1.weight \(5, 3, 3, 3\)"):
        load_weights(_cnn(), tmp_path / "w.pt")


def test_loading_into_a_meta_model_warns_nothing(saved):
    """The preflight builds every model on the meta device: PyTorch warned once per tensor."""
    with torch.device("meta"), warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_weights(_cnn(classes=3), saved[0]) == ["head.fc2.bias", "head.fc2.weight"]


class _RunsCode:
    def __reduce__(self):
        return os.system, ("echo this must never run",)


def _write(path: Path, content: object) -> Path:
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        torch.save(content, path)
    return path


@pytest.mark.parametrize(("make", "fragment"), [
    (lambda p: p.parent, "is a directory, not a file"),
    (lambda p: Path(os.devnull), "is a character device, not a regular file"),
    (lambda p: _write(p, b""), "is empty (0 bytes)"),
    (lambda p: _write(p, b"hello"), "not a file torch.save wrote (KeyError"),
    (lambda p: _write(p, {"x": _RunsCode()}), "refuses (GLOBAL posix.system): loading it could"),
    (lambda p: _write(p, [torch.zeros(1)]), "is not a state_dict (a dict of tensors)"),
])
def test_a_file_that_is_not_a_state_dict_is_one_line_saying_what_it_is(tmp_path, make, fragment):
    path = make(tmp_path / "w.pt")
    with pytest.raises(SpecError) as err:
        read_state_dict(path)
    text = str(err.value)
    assert str(path) in text and fragment in text, text
    assert "\n" not in text and "http" not in text and "weights_only` set to `False" not in text


def test_a_missing_file_is_a_missing_file(tmp_path):
    with pytest.raises(MissingFileError, match="'.*nope.pt' does not exist"):
        read_state_dict(tmp_path / "nope.pt")


def test_a_pickle_that_would_run_code_is_refused_even_unwrapped(tmp_path):
    path = tmp_path / "evil.pt"
    path.write_bytes(pickle.dumps(_RunsCode(), protocol=2))  # a bare pickle, no zip
    with pytest.raises(SpecError, match="could not be read"):
        read_state_dict(path)


def test_the_hash_follows_the_bytes_under_one_path(saved, tmp_path):
    path, _ = saved
    first = weights_sha256(str(path))
    assert first is not None and len(first) == 64 and weights_sha256(str(path)) == first
    torch.save(_cnn(classes=10, width=5).state_dict(), path)  # other weights, same name
    assert weights_sha256(str(path)) not in (None, first)
    assert weights_sha256(str(tmp_path)) is None and weights_sha256(str(tmp_path / "no")) is None


def test_the_note_names_what_stayed_fresh():
    assert fresh_note("w.pt", {"control": [], "dropout": []}) == "weights w.pt: every tensor loaded"
    same = fresh_note("w.pt", {"control": ["fc.bias", "fc.weight"], "dropout": ["fc.bias",
                                                                                "fc.weight"]})
    assert same.startswith("weights w.pt: fc.bias, fc.weight kept their fresh initialization")
    mixed = fresh_note("w.pt", {"control": ["fc.weight"], "wrn": []})
    assert "control: fc.weight; wrn: none" in mixed
