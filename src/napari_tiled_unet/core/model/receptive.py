"""The receptive field of a Keras image-to-image network, read off its architecture.

For a network with padded ("same") convolutions, the output pixel at ``p`` depends on the
input within ``radius`` px of ``p``; outputs closer than that to a tile's border see the
padding instead of image.  Cropping ``radius`` px from every side of each tile's output
therefore makes the stitched tiles equal one pass over the whole (mirror-padded) image.
The walk bounds the radius from above (a pooling window counts whole on each side) and
refuses layers whose reach it does not know, rather than guess.  Pure Python: it reads the
model's ``get_config()``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

__all__ = ["ReceptiveField", "receptive_field"]

#: Layers that work on each pixel separately (or only shift or crop the grid).
_POINTWISE = {
    "InputLayer", "Activation", "ReLU", "LeakyReLU", "PReLU", "ELU", "Softmax",
    "BatchNormalization", "Dropout", "SpatialDropout2D", "GaussianNoise", "GaussianDropout",
    "AlphaDropout", "Rescaling", "Identity", "Concatenate", "Add", "Subtract", "Multiply",
    "Average", "Maximum", "Minimum", "Cropping2D", "ZeroPadding2D", "Dense",
    "ActivityRegularization",
}  # fmt: skip
_CONVS = {"Conv2D", "SeparableConv2D", "DepthwiseConv2D", "Convolution2D"}
_POOLS = {"MaxPooling2D", "AveragePooling2D", "MaxPool2D", "AvgPool2D"}
_MODELS = {"Functional", "Model", "Sequential"}


@dataclass(frozen=True)
class ReceptiveField:
    """How far a network reaches.

    Attributes
    ----------
    radius : int
        Input px on each side of an output pixel that can change it (an upper bound).
    alignment : int
        The network's largest downsampling factor: input sizes must be multiples of it,
        and tiles placed on its grid.
    """

    radius: int
    alignment: int


@dataclass(frozen=True)
class _Reach:
    jump: Fraction  # input px per feature px
    radius: Fraction  # input px
    largest_jump: Fraction


def _pair(value: Any) -> tuple[int, int]:
    if isinstance(value, (int, float)):
        return (int(value), int(value))
    first, second = value
    return (int(first), int(second))


def _layer(reach: _Reach, entry: dict[str, Any]) -> _Reach:
    kind, config = entry["class_name"], entry.get("config", {})
    jump, radius = reach.jump, reach.radius
    if kind in _POINTWISE or (kind == "LayerNormalization" and _last_axis(config)):
        return reach
    if kind in _CONVS:
        kernel, dilation = _pair(config["kernel_size"]), _pair(config.get("dilation_rate", 1))
        span = max(math.ceil((k - 1) * d / 2) for k, d in zip(kernel, dilation))
        jump *= max(_pair(config.get("strides", 1)))
        return _Reach(jump, radius + span * reach.jump, max(reach.largest_jump, jump))
    if kind in _POOLS:
        pool = max(_pair(config["pool_size"]))
        jump *= max(_pair(config.get("strides") or config["pool_size"]))
        return _Reach(jump, radius + (pool - 1) * reach.jump, max(reach.largest_jump, jump))
    if kind == "Conv2DTranspose":
        jump /= max(_pair(config.get("strides", 1)))
        span = max(_pair(config["kernel_size"])) - 1
        return _Reach(jump, radius + span * jump, reach.largest_jump)
    if kind == "UpSampling2D":
        smooth = config.get("interpolation", "nearest") != "nearest"
        return _Reach(
            jump / max(_pair(config["size"])), radius + smooth * jump, reach.largest_jump
        )
    if kind in _MODELS:
        inner = _walk(config)
        return _Reach(
            jump * inner.jump,
            radius + inner.radius * jump,
            max(reach.largest_jump, jump * inner.largest_jump),
        )
    raise ValueError(
        f"cannot tell how far layer {entry.get('name', '?')!r} ({kind}) reaches; "
        "give the halo in the model's description"
    )


def _last_axis(config: dict[str, Any]) -> bool:
    axis = config.get("axis", -1)
    return axis in (-1, 3, [-1], [3])


def _inbound(entry: dict[str, Any]) -> list[str]:
    """Names of the layers feeding ``entry`` in a functional config."""
    names: list[str] = []

    def collect(item: Any) -> None:
        if isinstance(item, dict):
            history = item.get("config", {}).get("keras_history")
            if history:
                names.append(history[0])
            for value in item.values():
                collect(value)
        elif isinstance(item, (list, tuple)):
            for value in item:
                collect(value)

    collect(entry.get("inbound_nodes", []))
    return names


def _walk(config: dict[str, Any]) -> _Reach:
    """Reach at the (single) output of a functional or sequential model config."""
    start = _Reach(Fraction(1), Fraction(0), Fraction(1))
    layers = config["layers"]
    if "input_layers" not in config:  # Sequential: layers in order
        reach = start
        for entry in layers:
            reach = _layer(reach, entry)
        return reach
    reaches: dict[str, _Reach] = {}
    for entry in layers:  # a functional config lists layers in topological order
        sources = [reaches[name] for name in _inbound(entry) if name in reaches]
        before = (
            _Reach(
                max(s.jump for s in sources),
                max(s.radius for s in sources),
                max(s.largest_jump for s in sources),
            )
            if sources
            else start
        )
        reaches[entry["name"]] = _layer(before, entry)
    outputs = config["output_layers"]
    name = outputs[0] if isinstance(outputs[0], str) else outputs[0][0]
    return reaches[name]


def receptive_field(keras_model: Any) -> ReceptiveField:
    """Return the receptive field of a Keras image-to-image model (an upper bound).

    Parameters
    ----------
    keras_model : keras.Model
        A functional or sequential model; nested models are followed.

    Returns
    -------
    ReceptiveField

    Raises
    ------
    ValueError
        For a layer whose spatial reach is unknown (one line naming it).
    """
    reach = _walk(keras_model.get_config())
    return ReceptiveField(math.ceil(reach.radius), math.ceil(reach.largest_jump))
