"""An experiment spec written back as a TOML spec file that ``compare`` and ``train`` read.

A sweep saves its expanded spec this way (``OUT/sweep_spec.toml``), so any of its settings
can be trained alone, e.g. under torchrun with ``convdrop train --spec
OUT/sweep_spec.toml --method NAME --seed K --out OUT``, into the run folder the sweep
reads: every setting a run depends on is written explicitly, so the run keys match.
"""

from __future__ import annotations

import json
import math
from typing import Any

from convdrop.lab.spec.experiment import ExperimentSpec

__all__ = ["spec_to_toml"]


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"a spec value must be finite to be written as TOML, got {value}")
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # JSON's escapes are valid in TOML basic strings
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"cannot write {value!r} ({type(value).__name__}) as TOML")


def _table(fields: dict[str, Any]) -> list[str]:
    return [f"{key} = {_value(value)}" for key, value in fields.items() if value is not None]


def spec_to_toml(spec: ExperimentSpec, *, header: str = "") -> str:
    """``[experiment]`` with every set field and a ``[methods."NAME"]`` table per method
    with options; None values are left out (they are the fields' defaults)."""
    experiment = spec.model_dump(exclude={"method_options"})
    lines = [f"# {line}" for line in header.splitlines()]
    lines += ["[experiment]", *_table(experiment)]
    for name in spec.methods:
        options = spec.options_for(name).model_dump()
        if any(v is not None for v in options.values()):
            lines += ["", f"[methods.{json.dumps(name)}]", *_table(options)]
    return "\n".join(lines) + "\n"
