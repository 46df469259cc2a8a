"""convdrop for Keras 3: DropBlock layers and a drop-rate schedule callback.

Written with ``keras.ops`` and ``keras.random`` only, so the JAX, TensorFlow and torch
backends share one implementation; the seed rate comes from convdrop's own calibration
(:mod:`convdrop.ops.gamma`). Needs the ``keras`` extra (``pip install 'convdrop[keras]'``)
and a backend: torch comes with convdrop, ``convdrop[keras,jax]`` adds JAX. Choose it
with ``KERAS_BACKEND`` before ``keras`` is first imported; where nothing chose one and
TensorFlow is not installed, importing this package first picks torch. Importing it
registers the layers, so ``keras.models.load_model`` reads them from ``.keras`` files.
"""

from convdrop._extras import require
from convdrop.keras._backend import default_to_torch

require("keras", "convdrop.keras", ("keras",))
default_to_torch()

from convdrop.keras.callbacks import DropRateScheduler  # noqa: E402
from convdrop.keras.layers import DropBlock1D, DropBlock2D, DropBlock3D, DropBlockBase  # noqa: E402
from convdrop.keras.masks import block_mask, drop_block  # noqa: E402

__all__ = ["DropBlock1D", "DropBlock2D", "DropBlock3D", "DropBlockBase", "DropRateScheduler",
           "block_mask", "drop_block"]
