"""convdrop.keras picks Keras's torch backend only where Keras would pick a missing
TensorFlow; a backend the user chose, or a Keras already imported, is left alone.

Keras reads its backend once per process, so these call ``default_to_torch`` with the
process's state replaced (the variable, ``KERAS_HOME``, ``sys.modules``) and read the
variable it leaves; the README's examples and tests/keras run the real import."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from convdrop._extras import missing
from convdrop.keras._backend import default_to_torch

pytestmark = pytest.mark.skipif(not missing(["tensorflow"]),
                                reason="with TensorFlow installed Keras's default works")


def chosen(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, config: dict | None,
           variable: str | None = None, imported: bool = False) -> str | None:
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.delenv("KERAS_BACKEND", raising=False)
    if variable is not None:
        monkeypatch.setenv("KERAS_BACKEND", variable)
    if not imported:
        monkeypatch.delitem(sys.modules, "keras", raising=False)
    if config is not None:
        (tmp_path / "keras.json").write_text(json.dumps(config), encoding="utf-8")
    default_to_torch()
    return os.environ.get("KERAS_BACKEND")


def test_nothing_chosen_and_no_tensorflow_means_torch(monkeypatch, tmp_path):
    assert chosen(monkeypatch, tmp_path, None) == "torch"


def test_keras_s_own_tensorflow_default_in_keras_json_means_torch(monkeypatch, tmp_path):
    assert chosen(monkeypatch, tmp_path, {"backend": "tensorflow"}) == "torch"
    assert chosen(monkeypatch, tmp_path, {"floatx": "float32"}) == "torch"


def test_a_chosen_backend_or_an_imported_keras_stays(monkeypatch, tmp_path):
    assert chosen(monkeypatch, tmp_path, {"backend": "jax"}) is None
    assert chosen(monkeypatch, tmp_path, None, variable="numpy") == "numpy"
    assert chosen(monkeypatch, tmp_path, None, imported=True) is None
