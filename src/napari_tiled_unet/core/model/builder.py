"""``build_unet``: the U-Net of Ronneberger et al. (2015), Figure 1, as a Keras 3 model."""

from __future__ import annotations

from typing import Any

__all__ = ["build_unet", "paper_initializer"]


def paper_initializer(seed: int | None = None) -> Any:
    """Return the paper's weight initialiser: a Gaussian with std ``sqrt(2 / N)``.

    ``N`` is the number of incoming nodes of a neuron (``3 * 3 * channels`` for a 3x3
    convolution), i.e. an *untruncated* He-normal initialiser.
    """
    from napari_tiled_unet.core._keras import get_keras

    keras = get_keras()
    return keras.initializers.VarianceScaling(
        scale=2.0, mode="fan_in", distribution="untruncated_normal", seed=seed
    )


def _check_options(
    input_channels: int, num_classes: int, depth: int, base_filters: int, dropout: float
) -> None:
    for name, value, low in (
        ("input_channels", input_channels, 1),
        ("num_classes", num_classes, 2),
        ("depth", depth, 0),
        ("base_filters", base_filters, 1),
    ):
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    if not 0.0 <= float(dropout) < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")


def build_unet(
    *,
    input_channels: int = 1,
    num_classes: int = 2,
    depth: int = 4,
    base_filters: int = 64,
    dropout: float = 0.0,
    kernel_initializer: Any = "paper",
    seed: int | None = None,
    input_size: int | None = None,
    name: str = "unet",
) -> Any:
    """Build the valid-convolution U-Net of the paper's Figure 1.

    With the defaults this is the paper's network exactly: 31,030,658 parameters for one
    input channel and two classes, 572 x 572 in -> 388 x 388 out.  Unlike a fixed-size
    implementation, the model is fully convolutional: it accepts any *valid* input size
    (see :func:`napari_tiled_unet.core.model.geometry.valid_input_sizes`).  Only built-in Keras
    layers are used, so any Keras 3 loads a saved model without this package.

    Parameters
    ----------
    input_channels : int
        Channels of the input image.
    num_classes : int
        Output classes; the output is their softmax (float32, channels last).
    depth : int
        Number of 2x2 max-poolings (4 in the paper).
    base_filters : int
        Filters of the first level; doubled at each level down (64 in the paper).
    dropout : float
        Dropout rate applied at the end of the contracting path (the paper uses drop-out
        layers there during training); 0 disables it.  Inactive at inference.
    kernel_initializer : str or keras.initializers.Initializer
        ``"paper"`` (Gaussian, std ``sqrt(2/N)``), or any Keras initialiser.
    seed : int, optional
        Seed of the ``"paper"`` initialiser, for reproducible weights.
    input_size : int, optional
        Fix the spatial input size (must be valid); None (default) leaves it free.
    name : str
        Model name.

    Returns
    -------
    keras.Model
        The functional model ``(batch, Y, X, input_channels) -> (batch, Y', X', num_classes)``.
    """
    from napari_tiled_unet.core._keras import get_keras
    from napari_tiled_unet.core.model.geometry import is_valid_input_size, skip_crops

    _check_options(input_channels, num_classes, depth, base_filters, dropout)
    if input_size is not None and not is_valid_input_size(input_size, depth):
        raise ValueError(
            f"input_size {input_size} is not valid for depth {depth}; "
            "use napari_tiled_unet.nearest_valid_input_size"
        )
    keras = get_keras()
    layers = keras.layers
    init = paper_initializer(seed) if kernel_initializer == "paper" else kernel_initializer

    def conv(x: Any, filters: int, label: str) -> Any:
        return layers.Conv2D(
            filters, 3, padding="valid", activation="relu", kernel_initializer=init, name=label
        )(x)

    crops = skip_crops(depth)
    inputs = keras.Input((input_size, input_size, input_channels), name="image")
    x, skips = inputs, []
    for level in range(depth):
        filters = base_filters * 2**level
        x = conv(x, filters, f"down{level + 1}_conv1")
        x = conv(x, filters, f"down{level + 1}_conv2")
        skips.append(x)
        x = layers.MaxPooling2D(2, name=f"down{level + 1}_pool")(x)
    filters = base_filters * 2**depth
    x = conv(x, filters, "bottom_conv1")
    x = conv(x, filters, "bottom_conv2")
    if dropout:
        x = layers.Dropout(dropout, name="bottom_dropout")(x)
    for level in reversed(range(depth)):
        filters = base_filters * 2**level
        x = layers.Conv2DTranspose(
            filters, 2, strides=2, kernel_initializer=init, name=f"up{level + 1}_upconv"
        )(x)
        # The paper's "copy and crop": a fixed crop per level fits every valid input size.
        crop = crops[level]
        skip = layers.Cropping2D(((crop, crop), (crop, crop)), name=f"up{level + 1}_crop")(
            skips[level]
        )
        x = layers.Concatenate(axis=-1, name=f"up{level + 1}_concat")([skip, x])
        x = conv(x, filters, f"up{level + 1}_conv1")
        x = conv(x, filters, f"up{level + 1}_conv2")
    x = layers.Conv2D(num_classes, 1, kernel_initializer=init, name="classifier")(x)
    outputs = layers.Softmax(axis=-1, name="softmax", dtype="float32")(x)
    return keras.Model(inputs, outputs, name=name)
