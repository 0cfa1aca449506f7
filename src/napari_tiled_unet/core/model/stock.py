"""Stock Keras models: replace this package's custom layers by built-in ones.

Models saved by earlier versions crop their skip connections with the custom
``CenterCropLike`` layer, so only Keras sessions that import this package can load them.
Each such crop removes the same number of pixels for every valid input size (see
:func:`napari_tiled_unet.core.model.geometry.skip_crops`), which a built-in ``Cropping2D`` does as
well; :func:`to_stock_keras` rewrites the architecture that way and keeps the weights.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["is_stock_keras", "to_stock_keras"]

_CUSTOM = "CenterCropLike"


def _custom_layers(keras_model: Any) -> list[Any]:
    return [layer for layer in keras_model.layers if type(layer).__name__ == _CUSTOM]


def is_stock_keras(keras_model: Any) -> bool:
    """Return True if ``keras_model`` holds no layer of this package (only built-in Keras)."""
    return not _custom_layers(keras_model)


def _probe_sizes(keras_model: Any) -> list[int]:
    """Two valid input sizes of the model's depth (its own size if it has a fixed one)."""
    from napari_tiled_unet.core.model.geometry import valid_input_sizes

    fixed = keras_model.inputs[0].shape[1]
    if fixed is not None:
        return [int(fixed)]
    depth = sum(
        type(layer).__name__ in ("MaxPooling2D", "MaxPool2D") for layer in keras_model.layers
    )
    return valid_input_sizes(depth)[1:3]


def _crop_of(keras_model: Any, layer: Any) -> int:
    """Pixels ``layer`` crops from each side of its first input, the same at every size."""
    keras = _keras()
    probe = keras.Model(keras_model.inputs[0], list(layer.input))
    channels = keras_model.inputs[0].shape[-1]
    crops = set()
    for size in _probe_sizes(keras_model):
        for big, small in zip(
            *(s[1:3] for s in probe.compute_output_shape((1, size, size, channels)))
        ):
            crops.add((int(big) - int(small)) / 2)
    if len(crops) != 1 or not float(next(iter(crops))).is_integer():
        raise ValueError(
            f"layer {layer.name} crops {sorted(crops)} px depending on the input size; "
            "the model cannot be written with built-in Keras layers"
        )
    return int(crops.pop())


def _keras() -> Any:
    from napari_tiled_unet.core._keras import get_keras

    return get_keras()


def to_stock_keras(keras_model: Any) -> Any:
    """Return ``keras_model`` with every ``CenterCropLike`` replaced by a ``Cropping2D``.

    Layer names, weights and outputs stay the same; a model that already uses only
    built-in layers is returned as it is.

    Parameters
    ----------
    keras_model : keras.Model
        A functional model, e.g. a U-Net loaded from a file of an earlier version.

    Returns
    -------
    keras.Model
        A model that ``keras.models.load_model`` opens without custom objects once saved.

    Raises
    ------
    ValueError
        If a crop depends on the input size (not a valid-convolution U-Net).
    """
    custom = _custom_layers(keras_model)
    if not custom:
        return keras_model
    keras = _keras()
    crops = {layer.name: _crop_of(keras_model, layer) for layer in custom}
    config = keras_model.get_config()
    for entry in config["layers"]:
        crop = crops.get(entry["name"])
        if crop is None:
            continue
        dtype = keras_model.get_layer(entry["name"]).dtype_policy
        stock = keras.layers.Cropping2D(
            ((crop, crop), (crop, crop)), name=entry["name"], dtype=dtype
        )
        replacement = keras.saving.serialize_keras_object(stock)
        # A Cropping2D takes the skip connection alone: keep the first of the two inputs.
        (node,) = entry["inbound_nodes"]
        replacement["name"] = entry["name"]
        replacement["inbound_nodes"] = [{"args": [node["args"][0][0]], "kwargs": {}}]
        entry.clear()
        entry.update(replacement)
    rebuilt = keras.Model.from_config(config)
    for layer in rebuilt.layers:
        weights = keras_model.get_layer(layer.name).get_weights()
        if weights:
            layer.set_weights(weights)
    _check_same(keras_model, rebuilt)
    return rebuilt


def _check_same(original: Any, rebuilt: Any) -> None:
    """Both models give the same output on a random valid input (else a ValueError)."""
    size = _probe_sizes(original)[0]
    channels = original.inputs[0].shape[-1]
    probe = np.random.default_rng(0).random((1, size, size, channels), dtype=np.float32)
    before = np.asarray(original(probe, training=False))
    after = np.asarray(rebuilt(probe, training=False))
    if before.shape != after.shape or not np.allclose(before, after, atol=1e-6):
        raise ValueError(
            f"{original.name}: the model rewritten with built-in layers gives other "
            "outputs; it cannot be saved as a stock Keras model"
        )
