"""A Keras model from a bioimage.io description: geometry, processing, class names.

:func:`foreign_model` turns a loaded Keras model and its (latest-format) description into
what the tiling engine needs; the description's per-pixel processing steps become Keras
layers around the network, the statistics steps the normaliser.  Called by
:func:`napari_tiled_unet.core.model.zoo.load_bioimageio_model`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from napari_tiled_unet.core.model.types import ModelMetadata

__all__ = ["foreign_model", "normalization_of", "padded_geometry"]

_STATISTICS = ("scale_range", "zero_mean_unit_variance")
_POINTWISE = ("scale_linear", "fixed_zero_mean_unit_variance", "clip")
_IGNORED = ("ensure_dtype",)


def _per(kwargs: Any, name: str, channels: int) -> str:
    """'plane' or 'stack' from the axes a statistics step reduces over (else ValueError)."""
    axes = {str(a) for a in (kwargs.axes or ("batch", "y", "x", "channel"))}
    if not {"x", "y"} <= axes or ("channel" in axes and channels > 1):
        raise ValueError(
            f"{name}: its statistics over axes {sorted(axes)} are not per channel over Y and X; "
            "napari-tiled-unet cannot apply them"
        )
    return "stack" if "batch" in axes else "plane"


def normalization_of(steps: list[Any], name: str, channels: int) -> tuple[Any, list[Any]]:
    """Split preprocessing into a normalisation dict and per-pixel steps (after it).

    Returns
    -------
    normalization : dict or None
        For :func:`napari_tiled_unet.core.normalize.normalizer_from_dict`.
    pointwise : list
        The ``scale_linear`` / ``fixed_zero_mean_unit_variance`` / ``clip`` steps, in order.
    """
    normalization: dict[str, Any] | None = None
    pointwise: list[Any] = []
    for step in steps:
        kind = step.id
        if kind in _IGNORED and str(step.kwargs.dtype).startswith("float"):
            continue
        if kind in _STATISTICS and normalization is None and not pointwise:
            per = _per(step.kwargs, name, channels)
            if kind == "scale_range":
                k = step.kwargs
                normalization = {
                    "method": "percentile",
                    "low": float(k.min_percentile),
                    "high": float(k.max_percentile),
                    "per": per,
                    "eps": float(k.eps),
                }
            else:
                normalization = {"method": "mean_std", "eps": float(step.kwargs.eps), "per": per}
            continue
        if kind in _POINTWISE and not _is_percentile_clip(step):
            pointwise.append(step)
            continue
        raise ValueError(
            f"{name}: its preprocessing step {kind!r} is not supported here (supported: "
            "scale_range or zero_mean_unit_variance first, then scale_linear, "
            "fixed_zero_mean_unit_variance, clip with fixed bounds)"
        )
    return normalization, pointwise


def _is_percentile_clip(step: Any) -> bool:
    k = step.kwargs
    return step.id == "clip" and (
        getattr(k, "min_percentile", None) is not None
        or getattr(k, "max_percentile", None) is not None
        or k.min is None
        or k.max is None
    )


def _pointwise_layers(steps: list[Any], channels: int) -> list[Any]:
    """Built-in Keras layers for per-pixel steps (affine maps, clipping)."""
    from napari_tiled_unet.core._keras import get_keras

    layers = get_keras().layers

    def per_channel(value: Any) -> np.ndarray:
        return np.broadcast_to(np.asarray(value, np.float32), (channels,)).copy()

    out: list[Any] = []
    for step in steps:
        k = step.kwargs
        if step.id == "scale_linear":
            out.append(layers.Rescaling(per_channel(k.gain), per_channel(k.offset)))
        elif step.id == "fixed_zero_mean_unit_variance":
            mean, std = per_channel(k.mean), per_channel(k.std)
            out.append(layers.Rescaling(1.0 / std, -mean / std))
        else:  # clip(min, max) = min + relu(x - min) capped at max - min
            out += [
                layers.Rescaling(1.0, -float(k.min)),
                layers.ReLU(max_value=float(k.max) - float(k.min)),
                layers.Rescaling(1.0, float(k.min)),
            ]
    return out


def _postprocessing(steps: list[Any], name: str) -> list[Any]:
    from napari_tiled_unet.core._keras import get_keras

    layers = get_keras().layers
    out = []
    for step in steps:
        if step.id in ("ensure_dtype", "binarize"):  # labels come from the probabilities
            continue
        if step.id == "softmax" and str(step.kwargs.axis) == "channel":
            out.append(layers.Softmax(axis=-1))
        elif step.id == "sigmoid":
            out.append(layers.Activation("sigmoid"))
        else:
            raise ValueError(
                f"{name}: its postprocessing step {step.id!r} is not supported; "
                "napari-tiled-unet needs class probabilities (softmax or sigmoid)"
            )
    return out


def _wrapped(keras_model: Any, before: list[Any], after: list[Any]) -> Any:
    if not before and not after:
        return keras_model
    from napari_tiled_unet.core._keras import get_keras

    keras = get_keras()
    inputs = keras.Input(keras_model.inputs[0].shape[1:], name="image")
    x = inputs
    for layer in before:
        x = layer(x)
    x = keras_model(x)
    for layer in after:
        x = layer(x)
    return keras.Model(inputs, x, name=keras_model.name)


def _described_halo(descr: Any) -> int:
    return max((int(getattr(a, "halo", 0) or 0) for a in descr.outputs[0].axes), default=0)


def _input_step(descr: Any) -> int:
    """Return the step of the described input size (1 if sizes are fixed)."""
    steps = [getattr(a.size, "step", 1) for a in descr.inputs[0].axes if a.type == "space"]
    return max(int(s) for s in steps)


def padded_geometry(keras_model: Any, descr: Any) -> tuple[int, int]:
    """``(depth, halo)`` of a padded network: its output is as large as its input.

    The alignment is the network's downsampling (or the description's size step, if
    larger); the halo the larger of its receptive field and the described halo, rounded up
    to a multiple of the alignment.
    """
    from napari_tiled_unet.core.model.receptive import receptive_field

    name = descr.name
    try:
        reach = receptive_field(keras_model)
        radius, align = reach.radius, reach.alignment
    except ValueError as exc:
        if not _described_halo(descr):
            raise ValueError(f"{name}: {exc}") from exc
        radius, align = 0, 1
    align = max(align, _input_step(descr))
    depth = round(math.log2(align))
    if 2**depth != align:
        raise ValueError(f"{name}: input sizes step by {align} px, not a power of two")
    size = keras_model.inputs[0].shape[1] or 4 * align
    got = keras_model.compute_output_shape((1, size, size, keras_model.inputs[0].shape[-1]))
    if tuple(got[1:3]) != (size, size):
        raise ValueError(
            f"{name}: a {size} px input gives {got[1]} x {got[2]} px; napari-tiled-unet runs "
            "valid-convolution U-Nets and padded networks whose output is as large as the input"
        )
    # A multiple of the alignment keeps every tile on the pooling grid of the image itself,
    # so the result equals the network run on the whole image (beyond the halo).
    needed = max(radius, _described_halo(descr))
    return depth, -(-needed // align) * align


def _class_names(descr: Any, classes: int) -> tuple[str, ...]:
    axis = next(a for a in descr.outputs[0].axes if a.type == "channel")
    names = tuple(str(n) for n in axis.channel_names)
    if len(names) == 1 and classes == 2:
        return ("background", names[0])
    return names if len(names) == classes else ()


def foreign_model(keras_model: Any, descr: Any) -> tuple[Any, ModelMetadata]:
    """Return the Keras model to run (with its processing) and its metadata.

    Raises
    ------
    ValueError
        One line naming what cannot run here.
    """
    from napari_tiled_unet.core.model.inspect import _layer_facts, _shape_facts, metadata_of

    name = descr.name
    size, channels, outputs = _shape_facts(keras_model, name)
    normalization, pointwise = normalization_of(descr.inputs[0].preprocessing, name, channels)
    after = _postprocessing(descr.outputs[0].postprocessing, name)
    try:  # a valid-convolution U-Net, as ours
        base = metadata_of(keras_model, None, source=name)
        depth, halo = base.depth, None
    except ValueError:
        depth, halo = padded_geometry(keras_model, descr)
    fixed = (int(size[0]), int(size[1])) if None not in size else None
    meta = ModelMetadata(
        input_channels=channels,
        num_classes=max(2, outputs),
        depth=depth,
        base_filters=_layer_facts(keras_model)[1],
        class_names=_class_names(descr, max(2, outputs)),
        normalization=normalization,
        fixed_input_size=fixed,
        name=name,
        description=str(descr.description)[:500],
        padded_halo=halo,
    )
    model = _wrapped(keras_model, _pointwise_layers(pointwise, channels), after)
    return model, meta
