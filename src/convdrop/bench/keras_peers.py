"""convdrop.keras's DropBlock2D against the Keras peers, on the backend this process runs.

The peers are keras-cv's ``DropBlock2D`` (the paper's gamma and a dense min-pool; keras-cv
itself imports only beside TensorFlow) and ``keras.layers.SpatialDropout2D``. Two
measurements: the fraction each drops at rate 0.1 on small maps (7x7, 14x14, 16x16 with
block 7), and the time of one training-mode call (forward only, eager) as a multiple of
``x * scalar`` on the same tensor, with the layers interleaved round by round. A peer that
does not import, or fails on this backend, is reported as such, never an error.

Run it with ``python -m convdrop.bench.keras_peers [--quick]`` and a backend chosen by
``KERAS_BACKEND``; it is not part of ``convdrop bench``, which does not import Keras.
"""

from __future__ import annotations

import importlib
import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import keras
import numpy as np
from keras import ops

from convdrop._tables import markdown_table
from convdrop.keras import DropBlock2D

__all__ = ["dropped_fraction", "main", "peers", "report", "time_calls"]

Layer = Callable[..., Any]
MAPS = (7, 14, 16)
TIMED = ((32, 14, 14, 256), (32, 7, 7, 512))


def _keras_cv(rate: float, block: int, seed: int) -> Layer | str:
    try:
        module = importlib.import_module("keras_cv.layers")
    except Exception as err:  # ImportError, or keras-cv's own check for TensorFlow
        return f"missing (keras_cv: {type(err).__name__})"
    return module.DropBlock2D(rate=rate, block_size=block, seed=seed)


def peers(rate: float, block: int, seed: int = 0) -> dict[str, Layer | str]:
    """Name -> a fresh layer (channels_last), or -> why it is missing."""
    return {
        "convdrop.keras DropBlock2D": DropBlock2D(rate, block, seed=seed),
        "keras-cv DropBlock2D": _keras_cv(rate, block, seed),
        "keras SpatialDropout2D": keras.layers.SpatialDropout2D(rate, seed=seed),
    }


def _run(layer: Layer, x: Any) -> Any:
    """One training call, waited for (JAX dispatches asynchronously)."""
    y = layer(x, training=True)
    ops.convert_to_numpy(y[0, 0, 0, 0])
    return y


def _reason(err: Exception) -> str:
    """The error's type and first informative line (Keras puts a generic one first)."""
    lines = [line.strip() for line in str(err).replace("\x1b[1m", "").replace(
        "\x1b[0m", "").splitlines() if line.strip()]
    useful = [line for line in lines if not line.startswith("Exception encountered")]
    return f"{type(err).__name__}: {(useful or [''])[0][:70]}"


def dropped_fraction(layer: Layer, shape: tuple[int, ...], calls: int) -> float | str:
    """Mean fraction of zeros over ``calls`` calls on ones; a failure's first line."""
    x = ops.ones(shape)
    try:
        return float(np.mean([np.mean(ops.convert_to_numpy(_run(layer, x)) == 0)
                              for _ in range(calls)]))
    except Exception as err:
        return f"fails: {_reason(err)}"


def time_calls(layers: dict[str, Layer], shape: tuple[int, ...],
               repeats: int) -> dict[str, float | str]:
    """Median ms of one call per layer, round-robin, after one untimed call each."""
    x = keras.random.normal(shape, seed=1)
    timed: dict[str, list[float]] = {}
    failed: dict[str, str] = {}
    for name, layer in layers.items():
        try:
            _run(layer, x)
            timed[name] = []
        except Exception as err:
            failed[name] = f"fails: {_reason(err)}"
    for _ in range(repeats):
        for name in timed:
            start = time.perf_counter()
            _run(layers[name], x)
            timed[name].append(1e3 * (time.perf_counter() - start))
    return {**{name: statistics.median(ms) for name, ms in timed.items()}, **failed}


def _floor(rate: float) -> Layer:
    return lambda x, training=True: x * (1.0 / (1.0 - rate))


def report(*, rate: float = 0.1, block: int = 7, calls: int = 20, repeats: int = 20,
           maps: tuple[int, ...] = MAPS, shapes: tuple[tuple[int, ...], ...] = TIMED) -> str:
    """Both tables as Markdown, with the backend and versions in a first line."""
    threads = os.environ.get("OMP_NUM_THREADS", "default")
    lines = [f"# convdrop Keras peers: keras {keras.__version__}, backend "
             f"{keras.config.backend()}, rate={rate}, block={block}, channels_last, "
             f"{os.cpu_count()} cores, OMP_NUM_THREADS={threads}, median of {repeats}\n"]
    rows = []
    for name in peers(rate, block):
        cells = []
        for m in maps:  # a fresh layer per map size: convdrop's is built for one size
            layer = peers(rate, block)[name]
            cells.append(layer if isinstance(layer, str)
                         else dropped_fraction(layer, (32, m, m, 16), calls))
        rows.append([name, *(f"{c:.3f}" if isinstance(c, float) else c for c in cells)])
    header = f"dropped at rate {rate} (32 x m x m x 16, {calls} calls)"
    lines.append(markdown_table([header, *(f"{m}x{m}" for m in maps)], rows))
    for shape in shapes:
        layers = {"floor x * scalar": _floor(rate)}
        layers.update({n: lay for n, lay in peers(rate, block).items()
                       if not isinstance(lay, str)})
        times = time_calls(layers, shape, repeats)
        floor = times["floor x * scalar"]
        rows = [[name, f"{ms:.2f}" if isinstance(ms, float) else ms,
                 f"{ms / floor:.1f}" if isinstance(ms, float) else ""]
                for name, ms in times.items()]
        lines.append("")
        lines.append(markdown_table([f"one call, {'x'.join(map(str, shape))}", "ms",
                                     "x floor"], rows))
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    """``python -m convdrop.bench.keras_peers [--quick]``: print the tables."""
    quick = "--quick" in argv
    print(report(calls=5 if quick else 20, repeats=3 if quick else 20,
                 shapes=((8, 14, 14, 32),) if quick else TIMED))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
