"""Pick Keras's torch backend when nothing chose one and TensorFlow is not installed.

Keras reads its backend once, on first import, from ``KERAS_BACKEND`` or
``~/.keras/keras.json`` (``$KERAS_HOME``), and defaults to TensorFlow, writing that
default into keras.json. convdrop always has torch, often without TensorFlow: there
Keras's default would fail to import, so this sets ``KERAS_BACKEND=torch`` first. A
choice the user made (the variable, or another backend in keras.json) is left alone, as
is a Keras that is already imported. Imports no keras.
"""

from __future__ import annotations

import json
import os
import sys

from convdrop._extras import missing

__all__ = ["default_to_torch"]


def _configured() -> str:
    """The backend keras.json names, "tensorflow" (Keras's default) if it names none."""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    try:
        with open(os.path.join(home, "keras.json"), encoding="utf-8") as file:
            config = json.load(file)
    except (OSError, ValueError):
        return "tensorflow"
    backend = config.get("backend", "tensorflow") if isinstance(config, dict) else None
    return backend if isinstance(backend, str) else "tensorflow"


def default_to_torch() -> None:
    """Set ``KERAS_BACKEND=torch`` where Keras would otherwise pick a missing TensorFlow."""
    if "keras" in sys.modules or "KERAS_BACKEND" in os.environ:
        return
    if _configured() == "tensorflow" and missing(["tensorflow"]):
        os.environ["KERAS_BACKEND"] = "torch"
