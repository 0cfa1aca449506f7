"""Output layers of the Segment widget: named after the input, reused, put back on cancel.

Wiring only: which layer to update and which of the input's spatial metadata to copy; the
decisions (which axes carry over) come from :mod:`napari_tiled_unet.core.outputs`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from napari.layers import Image, Labels
from napari.utils.notifications import show_error

from napari_tiled_unet.core.outputs import kept_layer_axes

__all__ = [
    "OUTPUT_IMAGE_ROLES",
    "ROLE",
    "LayerSnapshot",
    "labels_name",
    "notify_error",
    "probabilities_name",
    "show_labels",
    "show_probabilities",
    "spatial_metadata",
]

#: Key in ``layer.metadata`` that marks the layers this plugin made.
ROLE = "napari_tiled_unet"
#: Roles of the image layers this plugin makes: results, not images to segment or train on.
OUTPUT_IMAGE_ROLES = ("probabilities", "weight map")
_SPATIAL = ("scale", "translate", "units", "axis_labels", "rotate", "shear", "affine")


def labels_name(image_name: str) -> str:
    """Name of the labels layer made from an image layer, e.g. ``nuclei [unet labels]``."""
    return f"{image_name} [unet labels]"


def probabilities_name(image_name: str) -> str:
    """Name of the probabilities layer made from an image layer."""
    return f"{image_name} [unet probabilities]"


def spatial_metadata(layer: Any, axes: str) -> dict[str, Any]:
    """Return the input layer's spatial metadata for its outputs (channel axis dropped)."""
    keep = kept_layer_axes(axes, layer.ndim)
    meta: dict[str, Any] = {}
    for key in ("scale", "translate", "units", "axis_labels"):  # the last two: napari >= 0.6
        values = getattr(layer, key, None)
        if values is not None:
            meta[key] = [values[i] for i in keep]
    if len(keep) == layer.ndim:  # rotations and affines only make sense on all axes
        meta.update(rotate=layer.rotate, shear=layer.shear, affine=layer.affine.affine_matrix)
    return meta


def _with_class_axis(meta: dict[str, Any]) -> dict[str, Any]:
    first = {"scale": 1.0, "translate": 0.0, "units": "pixel", "axis_labels": "class"}
    return {key: [value, *meta[key]] for key, value in first.items() if key in meta}


def _find(viewer: Any, name: str, kind: type) -> Any | None:
    for layer in viewer.layers:
        if layer.name == name and isinstance(layer, kind):
            return layer
    return None


@dataclass
class LayerSnapshot:
    """How to put the viewer back as it was before a run touched one output layer."""

    layer: Any
    replaced: Any = None
    index: int = -1
    state: dict[str, Any] = field(default_factory=dict)

    def restore(self, viewer: Any) -> None:
        """Remove the layer the run created, or give the reused layer its old state."""
        if not self.state:
            if self.layer in viewer.layers:
                viewer.layers.remove(self.layer)
            if self.replaced is not None:
                viewer.layers.insert(min(self.index, len(viewer.layers)), self.replaced)
            return
        for key, value in self.state.items():
            setattr(self.layer, key, value)


def show_labels(viewer: Any, name: str, data: np.ndarray, meta: dict[str, Any]) -> LayerSnapshot:
    """Show ``data`` in the labels layer called ``name``, reusing it when it fits.

    A reused layer keeps its data type: napari (0.9) may stop drawing a labels layer
    whose data changes type, so values are cast to it, and a layer whose type cannot hold
    them (say, uint8 for 300 objects) is replaced by a new one at the same place.

    Returns the snapshot that undoes this (see :meth:`LayerSnapshot.restore`).
    """
    old = _find(viewer, name, Labels)
    if old is not None and old.ndim == data.ndim and _fits(data, old.data.dtype):
        state = {"data": old.data, **{k: getattr(old, k) for k in _SPATIAL if k in meta}}
        if "affine" in state:
            state["affine"] = old.affine.affine_matrix
        old.data = np.asarray(data).astype(old.data.dtype, copy=False)
        for key, value in meta.items():
            setattr(old, key, value)
        return LayerSnapshot(old, state=state)
    index = -1
    if old is not None:  # same name, other dimensionality or type: replace it in place
        index = viewer.layers.index(old)
        viewer.layers.remove(old)
    layer = viewer.add_labels(data, name=name, metadata={ROLE: "labels"}, **meta)
    if index >= 0:
        viewer.layers.move(viewer.layers.index(layer), index)
    return LayerSnapshot(layer, replaced=old, index=index)


def _fits(data: np.ndarray, dtype: np.dtype) -> bool:
    """Whether every value of ``data`` is representable in the integer type ``dtype``."""
    data = np.asarray(data)
    if data.dtype == dtype:
        return True
    if not np.issubdtype(dtype, np.integer) or not np.issubdtype(data.dtype, np.integer):
        return False
    if data.size == 0:
        return True
    info = np.iinfo(dtype)
    return bool(info.min <= data.min() and data.max() <= info.max)


def show_probabilities(
    viewer: Any,
    name: str,
    probabilities: np.ndarray,
    meta: dict[str, Any],
    classes: Any,
    *,
    below: Any = None,
) -> Any:
    """Show class probabilities ``(..., classes)`` as one image layer, classes first.

    A new layer goes under ``below`` (the labels) and the viewer shows its class 1
    (the first foreground class) rather than the background.
    """
    data = np.moveaxis(probabilities, -1, 0)
    extra = _with_class_axis(meta)
    layer = _find(viewer, name, Image)
    if layer is not None and layer.ndim == data.ndim:
        layer.data = data
        for key, value in extra.items():
            setattr(layer, key, value)
        layer.metadata["class_names"] = list(classes)
        return layer
    layer = viewer.add_image(
        data,
        name=name,
        colormap="magma",
        contrast_limits=(0.0, 1.0),
        metadata={ROLE: "probabilities", "class_names": list(classes)},
        **extra,
    )
    if below is not None and below in viewer.layers:
        viewer.layers.move(viewer.layers.index(layer), viewer.layers.index(below))
    if viewer.dims.ndim == layer.ndim and data.shape[0] > 1:
        viewer.dims.set_current_step(0, 1)
    return layer


def _sentence(text: str) -> str:
    text = " ".join(text.strip().split()) or "something went wrong"
    first = text.split(" ", 1)[0]
    if not any(c in first for c in "./\\"):  # keep file names as they are
        text = text[0].upper() + text[1:]
    return text if text.endswith((".", "!", "?")) else text + "."


def notify_error(error: BaseException | str) -> str:
    """Show one sentence in a napari notification (never a traceback dialog); return it."""
    if isinstance(error, BaseException) and not isinstance(
        error, (ValueError, TypeError, OSError, ImportError)
    ):
        message = f"segmentation failed ({type(error).__name__}: {error})"
    else:
        message = str(error)
    message = _sentence(message)
    show_error(message)
    return message
