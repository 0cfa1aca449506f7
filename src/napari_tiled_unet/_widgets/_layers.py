"""Output layers of the Segment widget: named after the input, reused, put back on cancel.

Wiring only: which layer to update and which of the input's spatial metadata to copy; the
decisions (which axes carry over) come from :mod:`napari_tiled_unet.core.outputs`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
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
    "place_below",
    "next_step",
    "probability_name",
    "show_labels",
    "show_probabilities",
    "spatial_metadata",
    "update_labels",
]

#: Key in ``layer.metadata`` that marks the layers this plugin made.
ROLE = "napari_tiled_unet"
#: Roles of the image layers this plugin makes: results, not images to segment or train on.
OUTPUT_IMAGE_ROLES = ("probabilities", "weight map")
_SPATIAL = ("scale", "translate", "units", "axis_labels", "rotate", "shear", "affine")
#: The drawing tools' overlays of a labels layer (napari >= 0.5), built late (see
#: :func:`hold_overlays`).
_TOOL_OVERLAYS = ("polygon", "brush_stroke")


def labels_name(image_name: str) -> str:
    """Name of the labels layer made from an image layer, e.g. ``nuclei [unet labels]``."""
    return f"{image_name} [unet labels]"


def probability_name(image_name: str, class_name: str) -> str:
    """Name of the layer of one class's probability, e.g. ``nuclei P(border)``."""
    return f"{image_name} P({class_name})"


#: Colormaps of the probability layers by class index (background grey, then the labels'
#: usual first colours); they blend additively, so that overlapping classes stay legible.
_CLASS_COLORMAPS = ("gray", "green", "magenta", "cyan", "yellow", "red", "blue")
#: Opacity of probability and weight-map layers: the image stays visible beneath.
OVERLAY_OPACITY = 0.5


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
    #: Whether the new data were written into the layer's own array (``state["data"]`` is
    #: then a copy of the old values, written back on restore).
    in_place: bool = False
    #: What is left of putting a new layer into the viewer: steps, each for a turn of
    #: the event loop of its own (see :meth:`insert` and :func:`next_step`).
    pending: list[Callable[[], None]] = field(default_factory=list)

    def restore(self, viewer: Any) -> None:
        """Remove the layer the run created, or give the reused layer its old state."""
        if not self.state:
            if self.layer in viewer.layers:
                viewer.layers.remove(self.layer)
            if self.replaced is not None and self.replaced not in viewer.layers:
                viewer.layers.insert(min(self.index, len(viewer.layers)), self.replaced)
            return
        for key, value in self.state.items():
            if key == "data" and self.in_place:
                np.copyto(self.layer.data, value)
                self.layer.refresh()
            else:
                setattr(self.layer, key, value)

    def insert(self, viewer: Any, *, in_steps: bool = False) -> None:
        """Put a new layer into the viewer, where the layer it replaces was (if any).

        napari builds a new layer's visuals, controls and first picture on the main thread
        when the layer enters the viewer, a tenth of a second or more in one go.  With
        ``in_steps``, the layer enters hidden, unselected and without its drawing overlays
        (:func:`hold_overlays`); the rest waits in :attr:`pending`, steps of a few
        hundredths of a second for :func:`next_step` to take one turn of the event loop
        each.  Without, all of it happens now.  Does nothing for a reused layer, or a
        layer in the viewer already.
        """
        if self.state or self.layer in viewer.layers:
            return
        layer = self.layer
        overlays = hold_overlays(layer)
        if layer.visible:
            layer.visible = False
            self.pending.append(lambda: setattr(layer, "visible", True))
        self.pending += [partial(setattr, overlay, "visible", True) for overlay in overlays]
        if self.replaced is not None and self.replaced in viewer.layers:
            self.index = viewer.layers.index(self.replaced)
            viewer.layers.remove(self.replaced)
        if _append_unselected(viewer.layers, layer):
            self.pending.insert(0, partial(_select, viewer, layer))
        if self.index >= 0:
            viewer.layers.move(viewer.layers.index(self.layer), self.index)
        while not in_steps and next_step(self.pending):
            pass


def _append_unselected(layers: Any, layer: Any) -> bool:
    """Append ``layer`` to ``layers`` without making it the selected layer (if napari can).

    napari selects a new layer as it inserts it, and showing a new layer's controls is a
    fifth of the insertion's time on the main thread.  Returns whether the layer was left
    unselected, for :func:`_select` to select it a turn later.
    """
    plain = getattr(layers, "__wrapped__", layers)  # napari hands plugins a proxy
    activate = getattr(plain, "_activate_on_insert", None)  # napari's own switch
    if not isinstance(activate, bool):
        layers.append(layer)
        return False
    plain._activate_on_insert = False
    try:
        plain.append(layer)
    finally:
        plain._activate_on_insert = activate
    return activate


def _select(viewer: Any, layer: Any) -> None:
    """Make ``layer`` the selected layer, as napari does with a new layer (if still there)."""
    if layer in viewer.layers:
        viewer.layers.selection.active = layer


def show_labels(
    viewer: Any, name: str, data: np.ndarray, meta: dict[str, Any], *, insert: bool = True
) -> LayerSnapshot:
    """Show ``data`` in the labels layer called ``name``, reusing it when it fits.

    A reused layer keeps its data type: napari (0.9) may stop drawing a labels layer
    whose data changes type, so values are cast to it, and a layer whose type cannot hold
    them (say, uint8 for 300 objects) is replaced by a new one at the same place.  With
    ``insert=False`` a new layer is made but not put into the viewer yet: napari builds
    its visuals and controls when :meth:`LayerSnapshot.insert` does, a separate tenth of
    a second on the main thread.

    Returns the snapshot that undoes this (see :meth:`LayerSnapshot.restore`).
    """
    old = _find(viewer, name, Labels)
    if old is not None and old.ndim == data.ndim and _fits(data, old.data.dtype):
        # Same shape: write into the layer's array, which spares napari a new data array
        # (type checks, colour tables, every plane sliced anew) on the main thread.
        in_place = _writable(old.data) and old.data.shape == data.shape
        saved = old.data.copy() if in_place else old.data
        state = {"data": saved, **{k: getattr(old, k) for k in _SPATIAL if k in meta}}
        if "affine" in state:
            state["affine"] = old.affine.affine_matrix
        if in_place:
            np.copyto(old.data, data, casting="unsafe")
            old.refresh()
        else:
            old.data = np.asarray(data).astype(old.data.dtype, copy=False)
        _set_spatial(old, meta)
        return LayerSnapshot(old, state=state, in_place=in_place)
    layer = Labels(data, name=name, metadata={ROLE: "labels"}, **meta)
    snapshot = LayerSnapshot(layer, replaced=old)  # same name, other dimensionality or type
    if insert:
        snapshot.insert(viewer)
    return snapshot


def hold_overlays(layer: Any) -> list[Any]:
    """Hide the drawing overlays of a labels layer that is not in a viewer yet.

    napari builds the visuals of a new layer and of each of its visible overlays on the
    main thread, in one go, when the layer enters the viewer (about a tenth of a second
    for a labels layer); a hidden overlay is built when it is shown.  Holding the polygon
    and brush-stroke overlays back takes a fifth to a third of that out of the insertion,
    into turns of the event loop of their own.  They are not drawn before a drawing tool
    is picked, so nothing on screen changes.  Returns the overlays hidden, to be shown
    again; nothing is hidden on a napari without them.
    """
    overlays = getattr(layer, "_overlays", None)  # napari's own, on layers we made
    if not isinstance(overlays, Mapping):
        return []
    held = [overlays[k] for k in _TOOL_OVERLAYS if getattr(overlays.get(k), "visible", False)]
    for overlay in held:
        overlay.visible = False
    return held


def next_step(pending: list[Callable[[], None]]) -> bool:
    """Take the first of the ``pending`` steps (if any); return whether any remain."""
    if pending:
        pending.pop(0)()
    return bool(pending)


def _set_spatial(layer: Any, meta: dict[str, Any]) -> None:
    """Give ``layer`` the spatial metadata ``meta``, skipping the values it has already.

    Each change refreshes the layer (a new slice, thumbnail and extent): a run that reuses
    its layer would otherwise redraw it once per key for nothing.
    """
    for key, value in meta.items():
        current = layer.affine.affine_matrix if key == "affine" else getattr(layer, key)
        if not _same(current, value):
            setattr(layer, key, value)


def _same(a: Any, b: Any) -> bool:
    try:
        return bool(np.array_equal(np.asarray(a), np.asarray(b)))
    except (TypeError, ValueError):  # values numpy cannot compare
        return False


def _writable(data: Any) -> bool:
    """Whether ``data`` is a numpy array that may be written in place."""
    return isinstance(data, np.ndarray) and data.flags.writeable


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


def place_below(viewer: Any, layer: Any, above: Any) -> None:
    """Move ``layer`` just under ``above`` in the layer list (if both are there)."""
    if above is None or above not in viewer.layers or layer not in viewer.layers:
        return
    here, there = viewer.layers.index(layer), viewer.layers.index(above)
    if here > there:
        viewer.layers.move(here, there)


def show_probabilities(
    viewer: Any,
    image_name: str,
    probabilities: np.ndarray,
    meta: dict[str, Any],
    classes: Any,
    *,
    below: Any = None,
) -> list[Any]:
    """Show class probabilities ``(..., classes)`` as one image layer per class.

    Each layer, ``<image> P(<class>)``, is translucent with additive blending and its own
    colormap, and lies under ``below`` (the labels), so that neither the labels nor the
    image underneath are hidden; the background class starts hidden.  Existing layers of
    those names are reused.  Returns the layers, in class order.
    """
    layers = []
    for index, name in enumerate(classes):
        data = probabilities[..., index]
        layer_name = probability_name(image_name, str(name))
        layer = _find(viewer, layer_name, Image)
        if layer is not None and layer.ndim == data.ndim:
            layer.data = data
            for key, value in meta.items():
                setattr(layer, key, value)
        else:
            layer = viewer.add_image(
                data,
                name=layer_name,
                colormap=_CLASS_COLORMAPS[index % len(_CLASS_COLORMAPS)],
                contrast_limits=(0.0, 1.0),
                blending="additive",
                opacity=OVERLAY_OPACITY,
                visible=index > 0,
                metadata={ROLE: "probabilities", "class_name": str(name)},
                **meta,
            )
            place_below(viewer, layer, below)
        layers.append(layer)
    return layers


def update_labels(viewer: Any, layer: Any, data: np.ndarray, meta: dict[str, Any]) -> Any:
    """Write new labels into ``layer`` in place where they fit, else as :func:`show_labels`.

    Writing in place and refreshing spares napari the work of a new data array (type
    checks, colour tables, a full slice of every plane).  Returns the layer that holds them.
    """
    data = np.asarray(data)
    if _writable(layer.data) and layer.data.shape == data.shape and _fits(data, layer.data.dtype):
        np.copyto(layer.data, data, casting="unsafe")
        layer.refresh()
        return layer
    return show_labels(viewer, layer.name, data, meta).layer


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
