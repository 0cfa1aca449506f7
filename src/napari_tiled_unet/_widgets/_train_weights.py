"""The Train widget's weight-map preview: computed in a worker, shown on the labels.

The weights come from :func:`~napari_tiled_unet.core.train.planes.weight_map_planes` in a
worker thread; the layer ``<labels> [weight map]`` is added or updated on the main thread.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from napari.layers import Image
from napari.qt.threading import create_worker

from napari_tiled_unet._widgets._dock import layer_data
from napari_tiled_unet._widgets._layers import (
    OVERLAY_OPACITY,
    ROLE,
    notify_error,
    place_below,
    spatial_metadata,
)
from napari_tiled_unet._widgets._train_pairs import ignore_mask
from napari_tiled_unet.core.train.planes import weight_map_planes

__all__ = ["WeightMapPreview", "show_weight_map", "weight_map_name"]

# Letters for a labels layer's leading axes; any unique letters other than Y, X, C, S do.
_PLANE_LETTERS = "TZABDEFGHIJKLMNOPQRUVW"


def weight_map_name(labels_name: str) -> str:
    """Name of the weight-map layer of a labels layer, e.g. ``cells [weight map]``."""
    return f"{labels_name} [weight map]"


def show_weight_map(viewer: Any, labels: Any, weights: np.ndarray) -> Any:
    """Show ``weights`` in the image layer ``<labels> [weight map]``, reused when it fits.

    The layer takes the labels layer's scale, translation, units and transforms, so it
    lies exactly on the labels, and goes under them, translucent.  Returns the layer.
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
    layer = viewer.add_image(
        weights,
        name=name,
        colormap="inferno",
        contrast_limits=(0.0, top),
        # Translucent and added to what lies beneath, under the labels it was made from:
        # the image and the painted objects stay in sight.
        blending="additive",
        opacity=OVERLAY_OPACITY,
        metadata={ROLE: "weight map"},
        **spatial,
    )
    place_below(viewer, layer, labels)
    return layer


class WeightMapPreview:
    """The Train form's "Show weight map" button: one worker at a time, then a layer.

    Parameters
    ----------
    form : TrainWidget
        Provides the labels and "not annotated" choices, ``w0``, ``sigma``, ``status``,
        ``weight_map_button``, ``_viewer``, ``_report`` and ``_weight_classes``.
    """

    def __init__(self, form: Any) -> None:
        self._form = form
        self._worker: Any = None

    def start(self) -> None:
        """Compute the loss weight map of the chosen labels and show it as an image layer."""
        form = self._form
        layer = form.labels_layer.value
        if layer is None:
            form.status.value = notify_error("there are no labels to weigh; choose a Labels layer")
            return
        if self._worker is not None:
            return
        try:
            ignore = None if form.ignore_layer.value is layer else form.ignore_layer.value
            mask = ignore_mask(ignore, layer)
        except ValueError as exc:
            form.status.value = notify_error(exc)
            return
        form.weight_map_button.enabled = False
        self._worker = create_worker(
            weight_map_planes,
            layer_data(layer),
            ignore=mask,
            n_classes=form._weight_classes(),
            w0=float(form.w0.value),
            sigma=float(form.sigma.value),
            name=layer.name,
            _start_thread=False,
            _connect={
                "returned": lambda weights: self._show(layer, weights),
                "errored": lambda exc: form._report(exc, "the weight map"),
                "finished": self._finished,
            },
        )
        self._worker.start()

    def _show(self, labels: Any, weights: Any) -> None:
        show_weight_map(self._form._viewer, labels, weights)
        self._form.status.value = (
            f"Weight map of {labels.name}: weights up to {weights.max():.3g}."
        )

    def _finished(self) -> None:
        self._worker = None
        self._form.weight_map_button.enabled = True
