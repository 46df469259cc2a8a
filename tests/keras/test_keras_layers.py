"""The Keras layers' contract: config and ``.keras`` round trips, a settable rate, seeds,
layouts, scaling, inference identity and one clear error per bad argument."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest
from keras import ops

from convdrop.keras import DropBlock1D, DropBlock2D, DropBlock3D, drop_block
from convdrop.keras import masks as M
from convdrop.ops.gamma import seed_rate

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def numpy(x) -> np.ndarray:
    return ops.convert_to_numpy(x)


def small_model(layer: keras.layers.Layer) -> keras.Model:
    inputs = keras.Input((6, 6, 3))
    h = layer(keras.layers.Conv2D(4, 3, padding="same")(inputs))
    outputs = keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(h))
    return keras.Model(inputs, outputs)


def test_inference_and_rate_zero_return_the_input():
    x = ops.convert_to_tensor(np.random.default_rng(0).normal(size=(2, 5, 5, 3)), "float32")
    layer = DropBlock2D(0.5, 3, seed=0)
    assert layer(x) is x and layer(x, training=False) is x
    assert drop_block(x, 0.0, 3) is x and drop_block(x, 0.5, 3, training=False) is x
    np.testing.assert_array_equal(numpy(DropBlock2D(0.0, 3)(x, training=True)), numpy(x))


@pytest.mark.parametrize("layer,shape", [(DropBlock1D(0.3, 2, seed=1), (4, 9, 3)),
                                         (DropBlock2D(0.3, (2, 3), seed=1), (4, 7, 8, 3)),
                                         (DropBlock3D(0.3, 2, seed=1), (4, 5, 4, 6, 3))])
def test_every_rank_keeps_shape_and_dtype_and_the_batch_mean(layer, shape):
    y = numpy(layer(np.ones(shape, "float32"), training=True))
    assert y.shape == shape and y.dtype == np.float32
    assert 0 < (y == 0).mean() < 1
    assert y.mean() == pytest.approx(1.0, rel=1e-5)  # "batch": count / count_kept


def test_expected_scale_and_everything_dropped():
    x = np.ones((8, 6, 6, 2), "float32")
    y = numpy(DropBlock2D(0.3, 2, scale="expected", seed=2)(x, training=True))
    assert 0 < (y == 0).mean() < 1
    np.testing.assert_allclose(y[y != 0], 1 / 0.7, rtol=1e-6)
    for scale in ("batch", "expected"):
        y = numpy(DropBlock2D(1.0, 2, scale=scale)(x, training=True))
        assert np.isfinite(y).all() and (y == 0).all()


def test_float16_factors_saturate_instead_of_overflowing():
    x = np.ones((1, 4, 4, 1), "float16")
    y = numpy(drop_block(x, 0.99999, 1, scale="expected", seed=3))
    assert np.isfinite(y).all() and y.max() <= 65504


def test_channels_first_draws_per_channel_and_shared_channels_once_per_sample():
    x = np.ones((64, 3, 6, 6), "float32")
    y = numpy(DropBlock2D(0.3, 3, data_format="channels_first", seed=4)(x, training=True))
    assert y.shape == x.shape and not (y[:, :1] == y).all()
    y = numpy(DropBlock2D(0.3, 3, data_format="channels_first", shared_channels=True,
                          seed=4)(x, training=True))
    assert (y[:, :1] == y).all() and 0 < (y == 0).mean() < 1


def test_seeds_reproduce_and_a_generator_advances():
    x = np.ones((16, 6, 6, 2), "float32")
    first = numpy(DropBlock2D(0.3, 2, seed=7)(x, training=True))
    np.testing.assert_array_equal(first, numpy(DropBlock2D(0.3, 2, seed=7)(x, training=True)))
    generator = keras.random.SeedGenerator(7)
    layer = DropBlock2D(0.3, 2, seed=generator)
    a, b = numpy(layer(x, training=True)), numpy(layer(x, training=True))
    assert not np.array_equal(a, b)
    assert layer.seed_generator is generator and layer.get_config()["seed"] == 7


def test_the_rate_is_settable_and_reaches_the_threshold():
    layer = DropBlock2D(0.1, 3)
    layer(np.ones((1, 9, 9, 1), "float32"))  # builds for 9x9 maps
    layer.rate = 0.4
    assert layer.rate == 0.4 and float(numpy(layer._rate_variable)) == pytest.approx(0.4)
    assert int(numpy(layer._threshold)) == round(seed_rate((9, 9), (3, 3), 0.4, True) * M.DRAWS)
    layer.rate = 0
    assert int(numpy(layer._threshold)) == 0
    with pytest.raises(ValueError, match=r"rate must be a probability in \[0, 1\], got 1.5"):
        layer.rate = 1.5


def test_config_round_trip():
    layer = DropBlock3D(0.2, (1, 2, 3), data_format="channels_first", shared_channels=True,
                        calibrated=False, scale="expected", seed=5, target_rate=0.3,
                        name="db")
    config = layer.get_config()
    again = DropBlock3D.from_config(config)
    assert again.get_config() == config
    assert config["block_size"] == [1, 2, 3] and config["target_rate"] == 0.3


def test_a_keras_file_round_trip_keeps_rate_target_and_seed_state(tmp_path: Path):
    layer = DropBlock2D(0.25, 3, seed=11, name="drop")
    model = small_model(layer)
    x = np.random.default_rng(1).normal(size=(4, 6, 6, 3)).astype("float32")
    layer.rate, layer.target_rate = 0.15, 0.25
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    again = loaded.get_layer("drop")
    assert isinstance(again, DropBlock2D)
    assert again.rate == 0.15 and again.target_rate == 0.25 and again.spatial == (6, 6)
    assert int(numpy(again._threshold)) == int(numpy(layer._threshold))
    np.testing.assert_allclose(numpy(loaded(x)), numpy(model(x)), rtol=1e-6)
    # The seed generator's state is saved too: the next training draws agree.
    np.testing.assert_allclose(numpy(loaded(x, training=True)),
                               numpy(model(x, training=True)), rtol=1e-6)


def test_loading_weights_updates_the_python_rate(tmp_path: Path):
    model = small_model(DropBlock2D(0.25, 3, name="drop"))
    model.get_layer("drop").rate = 0.05
    model.save_weights(tmp_path / "w.weights.h5")
    other = small_model(DropBlock2D(0.25, 3, name="drop"))
    other.load_weights(tmp_path / "w.weights.h5")
    assert other.get_layer("drop").rate == pytest.approx(0.05)


def test_a_layer_is_built_for_one_map_size():
    layer = DropBlock2D(0.1, 3)
    layer(np.ones((1, 8, 8, 2), "float32"), training=True)
    with pytest.raises(ValueError, match=r"built for maps of size \(8, 8\)"):
        layer(np.ones((1, 9, 9, 2), "float32"), training=True)
    assert layer.spatial == (8, 8)
    with pytest.raises(ValueError, match="spatial sizes must be static"):
        DropBlock2D(0.1, 3).build((None, None, None, 3))


@pytest.mark.parametrize("kwargs,message", [
    ({"rate": -0.1}, "rate must be a probability"),
    ({"block_size": 0}, "block_size entries must be ints >= 1, got 0"),
    ({"block_size": (2, 2, 2)}, "block_size must be an int or a tuple of 2 ints"),
    ({"data_format": "NHWC"}, "data_format must be one of"),
    ({"scale": "mean"}, "scale must be one of"),
    ({"seed": 1.5}, "seed must be an int, a keras.random.SeedGenerator or None, got 1.5"),
    ({"calibrated": "yes"}, "calibrated must be True or False, got 'yes'"),
    ({"target_rate": 2}, "target_rate must be a probability"),
])
def test_bad_arguments_name_themselves(kwargs, message):
    with pytest.raises(ValueError, match=message):
        DropBlock2D(**{"rate": 0.1, "block_size": 3, **kwargs})


def test_a_wrong_rank_names_the_layout():
    with pytest.raises(ValueError, match=r"must have 4 dimensions \(N, H, W, C\)"):
        DropBlock2D(0.1, 3)(np.ones((2, 5, 3), "float32"), training=True)
    with pytest.raises(ValueError, match=r"must have 5 dimensions \(N, C, D, H, W\)"):
        DropBlock3D(0.1, 3, data_format="channels_first")(np.ones((2, 5, 3, 3), "float32"))
