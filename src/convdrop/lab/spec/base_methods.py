"""The built-in methods a comparison can run, by name: what each changes in the plain model.

Below both :mod:`convdrop.lab.spec.experiment` (which checks that every method a spec names has a
base here) and :mod:`convdrop.lab.spec.methods` (which builds each into a model and training
options), so neither imports the other to share the table.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["BASE_METHODS", "Method"]


@dataclass(frozen=True)
class Method:
    """What a method changes relative to the plain model."""

    description: str
    regularizer: str | None = None  # "dropout" | "spatial_dropout" | "dropblock"
    p: float = 0.0  # target drop probability
    block_size: int | None = None  # DropBlock block; None = the model's default
    schedule: str = "constant"  # drop-rate schedule over training
    batchnorm: bool = False  # simple_cnn only: conv -> BN -> ReLU
    label_smoothing: float = 0.0
    cutout: int = 0  # Cutout side in pixels (12 ≈ 14 % of a 32x32 image)
    placement: str = "between_convs"
    model: str | None = None  # None = the spec's model


BASE_METHODS: dict[str, Method] = {
    "control": Method("no regularizer"),
    "dropout": Method("dropout 0.1 between convolutions", "dropout", 0.1),
    "spatial_dropout": Method("spatial dropout 0.1 between convolutions", "spatial_dropout",
                              0.1),
    "dropblock": Method("DropBlock 0.1 at a constant rate", "dropblock", 0.1),
    "dropblock_scheduled": Method("DropBlock 0.1, linear ramp from 0", "dropblock", 0.1,
                                  schedule="linear"),
    "batchnorm": Method("batch norm between convolutions", batchnorm=True),
    "batchnorm_dropblock": Method("batch norm + scheduled DropBlock 0.1", "dropblock", 0.1,
                                  schedule="linear", batchnorm=True),
    "cutout": Method("Cutout 12x12 on the input", cutout=12),
    "label_smoothing": Method("label smoothing 0.1", label_smoothing=0.1),
    "dropblock_label_smoothing": Method("scheduled DropBlock 0.1 + label smoothing 0.1",
                                        "dropblock", 0.1, schedule="linear",
                                        label_smoothing=0.1),
}
