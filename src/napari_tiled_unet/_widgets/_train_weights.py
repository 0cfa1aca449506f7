"""The Train widget's weight-map preview layer: named after the labels, in their place.

Main thread only; the weights themselves come from
:func:`~napari_tiled_unet.core.train.planes.weight_map_planes` in a worker thread.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from napari.layers import Image

from napari_tiled_unet._widgets._layers import ROLE, spatial_metadata

__all__ = ["show_weight_map", "weight_map_name"]

# Letters for a labels layer's leading axes; any unique letters other than Y, X, C, S do.
_PLANE_LETTERS = "TZABDEFGHIJKLMNOPQRUVW"


def weight_map_name(labels_name: str) -> str:
    """Name of the weight-map layer of a labels layer, e.g. ``cells [weight map]``."""
    return f"{labels_name} [weight map]"


def show_weight_map(viewer: Any, labels: Any, weights: np.ndarray) -> Any:
    """Show ``weights`` in the image layer ``<labels> [weight map]``, reused when it fits.

    The layer takes the labels layer's scale, translation, units and transforms, so it
    lies exactly on the labels.  Returns the layer.
    """
    spatial = spatial_metadata(labels, _PLANE_LETTERS[: labels.ndim - 2] + "YX")
    name, top = weight_map_name(labels.name), float(weights.max()) or 1.0
    for layer in viewer.layers:
        if layer.name == name and isinstance(layer, Image) and layer.ndim == weights.ndim:
            layer.data = weights
            for key, value in spatial.items():
                setattr(layer, key, value)
            layer.contrast_limits = (0.0, top)
            return layer
    return viewer.add_image(
        weights,
        name=name,
        colormap="inferno",
        contrast_limits=(0.0, top),
        metadata={ROLE: "weight map"},
        **spatial,
    )
