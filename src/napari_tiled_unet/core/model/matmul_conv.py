"""Wide 3x3 convolutions computed as matrix products, for float32 inference on CPUs.

TensorFlow's float32 convolution kernels on a CPU (oneDNN) reach the machine's matrix
product rate on the U-Net's shallow layers but not on its widest: measured on 2 AVX-512
cores, a 3x3 convolution with 512 or 1024 channels in and out ran at 130-190 GFLOP/s,
while the same arithmetic written as three matrix products (one per kernel row, over
the three column shifts of the input side by side) ran at 220-280 GFLOP/s, next to a
matrix product rate of about 300.  With 256 channels or fewer the convolution kernel was
the faster (220-270 against 130-200), so only layers with at least
:data:`MIN_CHANNELS` channels in and out are rewritten.

The rewrite is exact for tiling on its own terms: a matrix product's row of results does
not depend on the other rows (checked bit for bit for 2 to 20,000 rows at 2 and 16
threads), so an output pixel is the same number in a tile and in the whole image.  A
single row takes a matrix-vector path with another summation order; a one-pixel output
is therefore computed as two rows.  It is not bit-identical to the convolution kernel
(float32 rounding, about 1e-7 relative), so the tiled-equals-whole check compares runs of
one model with one another, never with a model that did not have the rewrite.

Inference only: the rewritten network shares the original's layers and weights (nothing
is copied) and is never saved or trained.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from napari_tiled_unet.core._keras import get_keras

__all__ = ["MIN_CHANNELS", "with_matmul_convolutions"]

#: Layers with at least this many input and output channels are rewritten (see above).
MIN_CHANNELS = 512


def _eligible(layer: Any) -> bool:
    if type(layer).__name__ != "Conv2D":
        return False
    config = layer.get_config()
    return (
        tuple(config.get("kernel_size", ())) == (3, 3)
        and tuple(config.get("strides", ())) == (1, 1)
        and tuple(config.get("dilation_rate", ())) == (1, 1)
        and config.get("padding") == "valid"
        and config.get("data_format", "channels_last") == "channels_last"
        and config.get("groups", 1) == 1
        and layer.kernel.shape[2] >= MIN_CHANNELS
        and layer.kernel.shape[3] >= MIN_CHANNELS
    )


@cache
def _matmul_layer_type() -> type:
    """Return the layer class (made once: it needs Keras, which this module does not import)."""
    keras = get_keras()
    ops = keras.ops

    class MatmulConv2D(keras.layers.Layer):  # type: ignore[name-defined]
        """A valid 3x3 ``Conv2D`` as three matrix products, on that layer's own weights."""

        def __init__(self, conv: Any) -> None:
            super().__init__(name=f"{conv.name}_matmul", dtype=conv.dtype_policy)
            self.conv = conv

        def call(self, x: Any) -> Any:
            conv = self.conv
            kernel = conv.kernel
            inputs, filters = kernel.shape[2], kernel.shape[3]
            shape = ops.shape(x)
            height, width = shape[1] - 2, shape[2] - 2
            rows = shape[0] * height * width
            total = None
            for dy in range(3):
                band = x[:, dy : dy + height]
                # the three column shifts side by side: (pixels, 3 x channels) in the
                # kernel's (column, channel) order
                shifts = [band[:, :, dx : dx + width] for dx in range(3)]
                patches = ops.concatenate(shifts, axis=-1)
                flat = ops.reshape(patches, (-1, 3 * inputs))
                weights = ops.reshape(kernel[dy], (3 * inputs, filters))
                part = ops.cond(
                    rows == 1,  # a matrix-vector product sums in another order: two rows
                    lambda flat=flat, weights=weights: ops.matmul(
                        ops.concatenate([flat, flat], axis=0), weights
                    )[:1],
                    lambda flat=flat, weights=weights: ops.matmul(flat, weights),
                )
                total = part if total is None else total + part
            out = ops.reshape(total, (shape[0], height, width, filters))
            if conv.use_bias:
                out = out + conv.bias
            return conv.activation(out)

        def compute_output_shape(self, input_shape: tuple[Any, ...]) -> tuple[Any, ...]:
            return self.conv.compute_output_shape(input_shape)

    return MatmulConv2D


def with_matmul_convolutions(keras_model: Any) -> Any:
    """Return ``keras_model`` with its wide 3x3 convolutions as matrix products.

    The model itself when it has none (or is not a functional model that Keras can
    rebuild); otherwise a functional model on the same layers and weights.
    """
    keras = get_keras()
    layers = getattr(keras_model, "layers", [])
    if not any(_eligible(layer) for layer in layers):
        return keras_model
    matmul_conv = _matmul_layer_type()

    def clone(layer: Any) -> Any:
        return matmul_conv(layer) if _eligible(layer) else layer

    try:
        return keras.models.clone_model(keras_model, clone_function=clone)
    except (TypeError, ValueError, NotImplementedError):
        return keras_model
