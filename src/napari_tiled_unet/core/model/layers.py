"""The custom Keras layer of models saved by earlier versions, kept so that they load.

New models crop with the built-in ``Cropping2D`` (see :func:`~napari_tiled_unet.core.model.
geometry.skip_crops`), and saving rewrites old ones that way
(:func:`~napari_tiled_unet.core.model.stock.to_stock_keras`).  Importing this module imports
Keras; only :mod:`napari_tiled_unet.core.model.inspect` imports it, at call time.
"""

from __future__ import annotations

from typing import Any

from napari_tiled_unet.core._keras import get_keras

keras = get_keras()
ops = keras.ops

__all__ = ["CenterCropLike", "custom_objects"]


@keras.saving.register_keras_serializable(package="napari_tiled_unet")
class CenterCropLike(keras.layers.Layer):  # type: ignore[name-defined]
    """Crop the first input to the spatial size of the second, around its centre.

    This is the paper's "copy and crop" with the crop amount derived in the graph from the
    two feature maps, so one model runs on any valid input size (the spec hard-codes the
    amounts 4, 16, 40 and 88, which are right only for a 572 x 572 input).
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)

    def call(self, inputs: list[Any]) -> Any:  # noqa: D102
        skip, reference = inputs
        big = ops.shape(skip)
        small = ops.shape(reference)
        top = (big[1] - small[1]) // 2
        left = (big[2] - small[2]) // 2
        return skip[:, top : top + small[1], left : left + small[2], :]

    def compute_output_shape(self, input_shape: list[tuple[Any, ...]]) -> tuple[Any, ...]:  # noqa: D102
        skip, reference = input_shape
        return (skip[0], reference[1], reference[2], skip[3])

    def get_config(self) -> dict[str, Any]:  # noqa: D102
        return super().get_config()


def custom_objects() -> dict[str, type]:
    """Return the custom objects needed to deserialise models built by this package."""
    return {
        "CenterCropLike": CenterCropLike,
        "napari_tiled_unet>CenterCropLike": CenterCropLike,
    }
