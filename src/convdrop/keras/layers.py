"""Keras 3 DropBlock layers: the contract of ``convdrop.DropBlock2d`` in Keras's idiom.

Seeds only where a block fits, the calibrated rate by default (``calibrated=False`` for
the paper's gamma), masks per sample and channel (``shared_channels=True`` for one per
sample), "batch" or "expected" scaling, any block size clipped to the map, and the
input unchanged at inference. Keras conventions: ``channels_last`` by default (Keras's
``image_data_format()``), ``data_format="channels_first"``, ``seed=`` an int or a
``keras.random.SeedGenerator``, ``get_config``/``from_config`` and ``.keras`` files.

Why the rate is a variable: a compiled step (``jax.jit``, ``tf.function``,
``torch.compile``) reads a Python float once, when it traces, so a rate ramped by a
callback would never reach the graph, or would retrace it every step. The layer keeps
its rate, and the seed threshold solved for it on the host (:mod:`convdrop.ops.gamma`,
once per rate for the map size seen at build time), in two non-trainable variables that
the graph reads as state: setting ``layer.rate`` updates both, without a retrace.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import keras
import numpy as np
from keras import ops

from convdrop.keras import masks
from convdrop.ops import validate as v

__all__ = ["DropBlock1D", "DropBlock2D", "DropBlock3D", "DropBlockBase"]


def _seeds(seed: Any) -> tuple[int | None, keras.random.SeedGenerator]:
    """(the int seed for the config, the generator the layer draws from)."""
    if isinstance(seed, keras.random.SeedGenerator):
        return seed.get_config().get("seed"), seed
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise ValueError(f"seed must be an int, a keras.random.SeedGenerator or None, "
                         f"got {seed!r}")
    return seed, keras.random.SeedGenerator(seed)


def _flag(value: object, name: str) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return value


class DropBlockBase(keras.layers.Layer):
    """DropBlock over ``spatial_dims`` spatial dims; see :func:`convdrop.keras.drop_block`.

    Args:
        rate: probability that a unit is dropped, in [0, 1] (``p`` in the PyTorch ops);
            settable: ``layer.rate = 0.05``, also between the steps of a compiled fit.
        block_size: an int or one int per spatial dim, any size >= 1; clipped to the map.
        data_format: "channels_last" (N, *spatial, C), "channels_first" (N, C, *spatial),
            or None for ``keras.config.image_data_format()``.
        shared_channels: one mask per sample instead of one per sample and channel.
        calibrated: the seed rate whose expected dropped fraction is exactly ``rate``;
            False uses the paper's gamma formula.
        scale: "batch" (count / count_kept over the whole tensor) or "expected" (1 / (1 - rate)).
        seed: an int, a ``keras.random.SeedGenerator`` (shared with other layers, say)
            or None.
        target_rate: the rate a :class:`convdrop.keras.DropRateScheduler` ramps this layer
            to; it records it on its first fit and it travels in the config, so a model
            saved mid-ramp resumes towards the right rate. None until then.

    The spatial sizes must be static when the layer is built (``keras.Input(shape=(32,
    32, 3))``, not ``(None, None, 3)``): the seed rate is solved for them. In training the
    layer refuses other sizes (the rate would be wrong); at inference it passes anything.
    """

    spatial_dims: ClassVar[int]

    def __init__(self, rate: float, block_size: int | Sequence[int], *,
                 data_format: str | None = None, shared_channels: bool = False,
                 calibrated: bool = True, scale: str = "batch", seed: Any = None,
                 target_rate: float | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._rate = v.check_p(rate, "rate")
        self.block_size = v.check_block_size(block_size, self.spatial_dims)
        self.data_format = masks.check_data_format(data_format)
        self.shared_channels = _flag(shared_channels, "shared_channels")
        self.calibrated = _flag(calibrated, "calibrated")
        self.scale = v.check_scale(scale)
        self.target_rate = None if target_rate is None else v.check_p(target_rate,
                                                                      "target_rate")
        self.seed, self.seed_generator = _seeds(seed)
        self.spatial: tuple[int, ...] | None = None

    @property
    def rate(self) -> float:
        """The drop probability the next training call uses."""
        return self._rate

    @rate.setter
    def rate(self, value: float) -> None:
        self._rate = v.check_p(value, "rate")
        if self.built:
            self._assign()

    def _assign(self) -> None:
        self._rate_variable.assign(self._rate)
        self._threshold.assign(masks.seed_threshold(self.spatial, self.block_size, self._rate,
                                                    self.calibrated))

    def build(self, input_shape: Sequence[int | None]) -> None:
        _, spatial, _ = masks.split_shape(input_shape, self.data_format, self.spatial_dims,
                                          name=f"{self.name}'s input")
        if any(size is None for size in spatial):
            raise ValueError(
                f"{self.name}: the spatial sizes must be static to solve the seed rate, got "
                f"input shape {tuple(input_shape)} ({self.data_format}); give keras.Input "
                f"a shape with them")
        self.spatial = tuple(int(size) for size in spatial)
        self._rate_variable = self.add_weight(
            name="rate", shape=(), dtype="float32", initializer="zeros", trainable=False,
            autocast=False)
        self._threshold = self.add_weight(
            name="seed_threshold", shape=(), dtype="int32", initializer="zeros",
            trainable=False)
        self._assign()

    def call(self, inputs: Any, training: bool | None = None) -> Any:
        if not training:
            return inputs
        batch, spatial, channels = masks.split_shape(inputs.shape, self.data_format,
                                                     self.spatial_dims, name=self.name)
        if tuple(spatial) != self.spatial:
            raise ValueError(
                f"{self.name} was built for maps of size {self.spatial}, got input shape "
                f"{tuple(inputs.shape)}; the seed rate depends on the map size, so use one "
                f"layer per size")
        dropped = masks.dropped_mask(
            ops.shape(inputs)[0] if batch is None else batch, self.spatial, channels,
            self.block_size, self._threshold, data_format=self.data_format,
            shared_channels=self.shared_channels, seed=self.seed_generator)
        return masks.apply_drop(inputs, dropped, self._rate_variable, self.scale)

    def compute_output_shape(self, input_shape: Sequence[int | None]) -> tuple[int | None, ...]:
        return tuple(input_shape)

    def load_own_variables(self, store: Any) -> None:
        """Loading weights also loads the rate: the Python-side copy follows the variable."""
        super().load_own_variables(store)
        loaded = float(ops.convert_to_numpy(self._rate_variable))
        if np.float32(self._rate) != np.float32(loaded):
            self._rate = loaded

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            rate=self._rate, block_size=list(self.block_size), data_format=self.data_format,
            shared_channels=self.shared_channels, calibrated=self.calibrated,
            scale=self.scale, seed=self.seed, target_rate=self.target_rate)
        return config


@keras.saving.register_keras_serializable(package="convdrop")
class DropBlock1D(DropBlockBase):
    """DropBlock over (N, L, C) inputs, or (N, C, L) with ``data_format="channels_first"``."""

    spatial_dims = 1


@keras.saving.register_keras_serializable(package="convdrop")
class DropBlock2D(DropBlockBase):
    """DropBlock over (N, H, W, C) inputs, or (N, C, H, W) with channels_first."""

    spatial_dims = 2


@keras.saving.register_keras_serializable(package="convdrop")
class DropBlock3D(DropBlockBase):
    """DropBlock over (N, D, H, W, C) inputs, or (N, C, D, H, W) with channels_first."""

    spatial_dims = 3
