"""convdrop.keras on another Keras backend than this run's: JAX, where it is installed
(``pip install 'convdrop[keras,jax]'``). Keras fixes its backend when first imported,
so each check runs in a child process with ``KERAS_BACKEND=jax``."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest
from keras import ops

from convdrop._extras import missing
from convdrop.keras import DropBlock2D

pytestmark = [
    pytest.mark.jax,
    pytest.mark.skipif(bool(missing(["jax"])), reason="jax is not installed (convdrop[jax])"),
    pytest.mark.skipif(keras.config.backend() == "jax", reason="this run is on JAX already"),
    pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning"),
]
TESTS = Path(__file__).resolve().parent


def under_jax(args: list[str], timeout: int) -> subprocess.CompletedProcess:
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env,
                          timeout=timeout, cwd=TESTS.parents[1])


def test_a_model_saved_here_loads_and_trains_under_jax(tmp_path: Path):
    inputs = keras.Input((6, 6, 3))
    layer = DropBlock2D(0.3, 3, seed=3, name="drop")
    outputs = keras.layers.Dense(2)(layer(keras.layers.Conv2D(4, 3, padding="same")(inputs)))
    model = keras.Model(inputs, outputs)
    layer.rate, layer.target_rate = 0.1, 0.3
    x = np.random.default_rng(0).normal(size=(4, 6, 6, 3)).astype("float32")
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", ops.convert_to_numpy(model(x)))
    model.save(tmp_path / "m.keras")
    script = textwrap.dedent(f"""
        import numpy as np, convdrop.keras, keras
        assert keras.config.backend() == "jax"
        model = keras.models.load_model({str(tmp_path / "m.keras")!r})
        layer = model.get_layer("drop")
        assert (layer.rate, layer.target_rate) == (0.1, 0.3), (layer.rate, layer.target_rate)
        x = np.load({str(tmp_path / "x.npy")!r})
        np.testing.assert_allclose(np.asarray(model(x)), np.load({str(tmp_path / "y.npy")!r}),
                                   rtol=1e-5, atol=1e-6)
        y = np.asarray(model.layers[2](np.ones((8, 6, 6, 4), "float32"), training=True))
        assert 0 < (y == 0).mean() < 1
        print("ok")
    """)
    result = under_jax(["-c", script], timeout=120)
    assert result.returncode == 0 and result.stdout.strip().endswith("ok"), result.stderr[-3000:]


@pytest.mark.slow
def test_every_keras_test_passes_under_jax():
    """The whole tests/keras suite (slow tests aside) on JAX: about 1.5 CPU minutes, 4 to
    15 minutes of wall time on the shared 2-core development machine."""
    result = under_jax(["-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "not slow",
                        str(TESTS)], timeout=1800)
    assert result.returncode == 0, result.stdout[-3000:]
    assert " passed" in result.stdout and " failed" not in result.stdout
