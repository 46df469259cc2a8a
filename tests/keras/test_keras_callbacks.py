"""The Keras DropRateScheduler: the ramp inside ``fit``, its resume from a ``.keras`` file,
the rate reaching a compiled step, and no retrace while it ramps."""

from __future__ import annotations

import functools
from pathlib import Path

import keras
import numpy as np
import pytest
from keras import ops

from convdrop import get_schedule
from convdrop.keras import DropBlock2D, DropRateScheduler
from convdrop.keras.callbacks import convdrop_layers

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")
BACKEND = keras.config.backend()


class Recorder(keras.callbacks.Callback):
    """The rate each convdrop layer holds when each batch starts."""

    def __init__(self) -> None:
        super().__init__()
        self.rates: list[float] = []

    def on_train_begin(self, logs=None):
        self.layer = convdrop_layers(self.model)[0]  # nested models included

    def on_train_batch_begin(self, batch, logs=None):
        self.rates.append(self.layer.rate)


def model_and_data(target: float = 0.2) -> tuple[keras.Model, np.ndarray, np.ndarray]:
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6, 6, 3))
    h = keras.layers.Conv2D(4, 3, padding="same")(inputs)
    h = DropBlock2D(target, 3, seed=1, name="drop")(h)
    outputs = keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(h))
    model = keras.Model(inputs, outputs)
    model.compile(keras.optimizers.SGD(0.01), "mse")
    rng = np.random.default_rng(0)
    return model, rng.normal(size=(16, 6, 6, 3)).astype("float32"), rng.normal(
        size=(16, 2)).astype("float32")


def fit(model, x, y, callback, epochs: int) -> list[float]:
    recorder = Recorder()
    model.fit(x, y, batch_size=4, epochs=epochs, callbacks=[callback, recorder], verbose=0,
              shuffle=False)
    return recorder.rates


@pytest.mark.parametrize("name,options", [("linear", {}), ("cosine", {}), ("step", {"levels": 2}),
                                          ("linear", {"warmup_steps": 3})])
def test_fit_ramps_the_rate_from_the_global_step(name, options):
    model, x, y = model_and_data()
    rates = fit(model, x, y, DropRateScheduler(name, total_steps=6, **options), epochs=2)
    schedule = get_schedule(name, **options)
    assert rates == pytest.approx([0.2 * schedule(k, 6) for k in range(8)])
    layer = model.get_layer("drop")
    assert layer.target_rate == 0.2 and layer.rate == pytest.approx(0.2)
    # The variable the compiled step reads agrees (under JAX: survived the state sync).
    assert float(ops.convert_to_numpy(layer._rate_variable)) == pytest.approx(0.2)


def test_a_reloaded_model_continues_the_ramp_exactly(tmp_path: Path):
    model, x, y = model_and_data()
    straight = fit(model, x, y, DropRateScheduler("linear", total_steps=10), epochs=3)
    model, x, y = model_and_data()
    first = fit(model, x, y, DropRateScheduler("linear", total_steps=10), epochs=2)
    model.save(tmp_path / "ramp.keras")
    loaded = keras.models.load_model(tmp_path / "ramp.keras")
    assert loaded.get_layer("drop").target_rate == 0.2  # not the ramped-down 0.16
    rest = fit(loaded, x, y, DropRateScheduler("linear", total_steps=10), epochs=1)
    assert first + rest == pytest.approx(straight)
    assert rest == pytest.approx([0.2 * k / 10 for k in (8, 9, 10, 10)])


class BatchMetric(keras.callbacks.Callback):
    """Each batch's own value of a metric that Keras logs as a running mean over the epoch
    (equal batch sizes: batch k's value is (k + 1) m_k - k m_(k-1))."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name, self.means = name, []

    def on_train_batch_end(self, batch, logs=None):
        self.means.append(float(logs[self.name]))

    def values(self) -> list[float]:
        means = [0.0, *self.means]
        return [(k + 1) * means[k + 1] - k * means[k] for k in range(len(self.means))]


def test_the_rate_reaches_the_compiled_step_between_batches():
    """The rate is 0 for two warm-up steps, then 0.5, inside one epoch of four batches
    (under JAX the new rate must reach the trainer's state mid-epoch). The zeros of the
    layer's output follow: block 1 on 64 x 8 x 8 x 4 units gives a fraction within 0.03
    of the rate (about 8 standard errors)."""
    inputs = keras.Input((8, 8, 4))
    dropped = DropBlock2D(0.5, 1, seed=2, name="drop")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(4, use_bias=False,
                                                   kernel_initializer="identity")(dropped))

    def zero_fraction(y_true, y_pred):
        return ops.mean(ops.cast(ops.equal(y_pred, 0.0), "float32"))

    model.compile(keras.optimizers.SGD(0.0), "mse", metrics=[zero_fraction])
    x = np.ones((256, 8, 8, 4), "float32")
    metric = BatchMetric("zero_fraction")
    model.fit(x, x, batch_size=64, epochs=1, verbose=0, shuffle=False, callbacks=[
        DropRateScheduler("constant", total_steps=4, warmup_steps=2), metric])
    assert metric.values() == pytest.approx([0.0, 0.0, 0.5, 0.5], abs=0.03)


def test_a_model_without_convdrop_layers_is_an_error():
    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(1)(inputs))
    model.compile("sgd", "mse")
    with pytest.raises(ValueError, match="has no convdrop.keras layer"):
        model.fit(np.ones((2, 3)), np.ones((2, 1)), verbose=0,
                  callbacks=[DropRateScheduler("linear", total_steps=3)])


@pytest.mark.parametrize("args,message", [
    (("linear", 0), "total_steps must be an int >= 1, got 0"),
    (("ramp", 5), "schedule must be one of"),
    ((3, 5), "schedule must be a name"),
])
def test_bad_arguments_name_themselves(args, message):
    with pytest.raises(ValueError, match=message):
        DropRateScheduler(*args)
    with pytest.raises(ValueError, match="warmup_steps and options apply to a named schedule"):
        DropRateScheduler(lambda step, total: 1.0, 5, warmup_steps=1)


@pytest.mark.skipif(BACKEND != "jax", reason="jax.jit traces only under the JAX backend")
def test_jax_jit_traces_once_while_the_rate_ramps():
    class Traces(keras.layers.Layer):
        """Counts the Python runs of ``call``: under jax.jit, one per trace."""

        count = 0

        def call(self, x):
            Traces.count += 1
            return x

    model, x, y = model_and_data()
    inputs = keras.Input((6, 6, 3))
    model = keras.Model(inputs, model(Traces()(inputs)))
    model.compile(keras.optimizers.SGD(0.01), "mse", jit_compile=True)
    callback = DropRateScheduler("linear", total_steps=12)
    model.fit(x, y, batch_size=4, epochs=1, verbose=0, callbacks=[callback])
    traced = Traces.count
    fit(model, x, y, callback, epochs=2)
    assert Traces.count == traced and callback.step_count == 12


@pytest.mark.slow
@pytest.mark.skipif(BACKEND != "torch", reason="torch.compile runs under the torch backend")
def test_a_torch_compiled_fit_does_not_recompile_while_the_rate_ramps(monkeypatch):
    """``jit_compile=True`` under the torch backend is ``torch.compile``; a backend that
    records each graph it is given (and runs it eagerly) shows that the graphs of the
    first epoch serve every later step. Keras's own random ops break the graph (its
    seeding is ``torch.compiler.disable``d); that is Keras's, for its Dropout too."""
    import torch

    graphs: list[object] = []

    def record(graph, example_inputs):
        graphs.append(graph)
        return graph.forward

    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend=record))
    model, x, y = model_and_data()
    model.compile(keras.optimizers.SGD(0.01), "mse", jit_compile=True)
    callback = DropRateScheduler("linear", total_steps=12)
    model.fit(x, y, batch_size=4, epochs=1, verbose=0, callbacks=[callback])
    compiled = len(graphs)
    rates = fit(model, x, y, callback, epochs=2)
    assert compiled > 0 and len(graphs) == compiled
    assert rates == pytest.approx([0.2 * k / 12 for k in range(4, 12)])
