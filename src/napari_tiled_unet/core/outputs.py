"""Between a viewer and a run: axes of an image layer in, labels from probabilities out.

Pure numpy, no Qt and no napari, so that everything the Segment widget decides is tested
here: the axes guessed for a layer, the plane under the viewer's cursor, the labels made
from cached class probabilities (re-thresholding without running the network again), which
spatial metadata carries over to the outputs, and the one-line summary of a tile plan shown
before Run.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from napari_tiled_unet.core.axes import AxesLayout, parse_axes
from napari_tiled_unet.core.options import DEFAULT_MIN_CONTRAST
from napari_tiled_unet.core.postprocess import classes_to_instances, drop_faint
from napari_tiled_unet.core.sizing import Rescale, plan_rescale, scaled_shape
from napari_tiled_unet.core.tiling import NetworkSpec, TilePlan, plan_tiles
from napari_tiled_unet.core.timings import cached_timings

__all__ = [
    "OutputKind",
    "canonical_view",
    "channels_last",
    "check_image",
    "class_labels",
    "current_plane",
    "describe_plan",
    "foreground_probability",
    "guess_axes",
    "instances_of",
    "kept_layer_axes",
    "labels_from_probabilities",
    "live_batch_size",
    "n_planes",
    "planes_from",
    "plan_for_image",
    "rescale_for_image",
]

OutputKind = Literal["classes", "instances"]

# Axis names that readers and users give to layer dimensions, mapped to our letters.
_AXIS_NAMES = {
    "t": "T",
    "time": "T",
    "z": "Z",
    "depth": "Z",
    "plane": "Z",
    "y": "Y",
    "x": "X",
    "c": "C",
    "ch": "C",
    "channel": "C",
    "channels": "C",
}


def foreground_probability(probabilities: np.ndarray) -> np.ndarray:
    """Probability of not being background: the sum of classes ``1..K-1`` (float32).

    Summing the foreground classes (rather than ``1 - p[..., 0]``) keeps regions that were
    never computed (all-zero probabilities) at 0, i.e. background.
    """
    probs = np.asarray(probabilities)
    return probs[..., 1:].sum(axis=-1, dtype=np.float32)


def class_labels(probabilities: np.ndarray, *, threshold: float = 0.5) -> np.ndarray:
    """Class labels with a foreground threshold; at 0.5 exactly the argmax.

    A pixel takes its most probable foreground class when that class's probability
    exceeds the background's by the odds ``threshold / (1 - threshold)``, and is background
    (0) otherwise.  At ``threshold=0.5`` (odds 1) this is the argmax of the probabilities
    (ties go to background), the labels of :func:`napari_tiled_unet.segment` and of the
    batch engine, for any number of classes; with two classes it is ``p[..., 1] >
    threshold``.  Regions never computed (all-zero probabilities) are background.

    Parameters
    ----------
    probabilities : ndarray
        Class probabilities, classes on the last axis (at least 2).
    threshold : float
        In [0, 1); lower values grow the objects, higher values shrink them.

    Returns
    -------
    ndarray
        Labels of the smallest unsigned dtype that holds the classes (uint8 up to 256).
    """
    probs = np.asarray(probabilities)
    if probs.ndim < 1 or probs.shape[-1] < 2:
        raise ValueError(f"expected at least 2 classes on the last axis, got shape {probs.shape}")
    if not 0.0 <= float(threshold) < 1.0:
        raise ValueError(f"the threshold must be in [0, 1), got {threshold!r}")
    dtype = np.min_scalar_type(probs.shape[-1] - 1)
    odds = float(threshold) / (1.0 - float(threshold))
    foreground = probs[..., 1:]
    best = np.argmax(foreground, axis=-1)
    best_p = np.take_along_axis(foreground, best[..., None], axis=-1)[..., 0]
    wins = best_p > probs[..., 0] * odds  # odds 1.0: exactly best_p > background
    return np.where(wins, best + 1, 0).astype(dtype)


def canonical_view(array: np.ndarray, axes: str) -> np.ndarray:
    """View an array whose first ``len(axes)`` axes are ``axes`` as ``(planes..., Y, X, ...)``.

    Axes after the named ones (e.g. classes) stay last.  Writing into the view writes into
    ``array``, which is how a live result in the viewer's axis order is filled plane by plane.
    """
    named = len(axes)
    layout = parse_axes(axes, tuple(array.shape[:named]))
    order = layout.canonical_order()
    return array.transpose([*order, *range(named, array.ndim)])


def instances_of(
    classes: np.ndarray,
    n_classes: int,
    *,
    min_size: int = 0,
    merge_diagonal: bool = False,
    image: np.ndarray | None = None,
    min_contrast: float = DEFAULT_MIN_CONTRAST,
) -> np.ndarray:
    """Return instance labels of class labels, the one rule for a model's classes.

    For 3-class models the interior seeds grow into their border
    (:func:`napari_tiled_unet.core.postprocess.classes_to_instances`); otherwise each
    connected foreground region is one object, and with ``merge_diagonal`` (the batch
    engine's files) regions that touch at a corner are one object too.  Objects under
    ``min_size`` px are dropped, and, where the ``image`` the classes were made from is
    given (the classes' shape, channels last allowed), so are objects fainter than
    ``min_contrast`` times the typical object of their plane
    (:func:`napari_tiled_unet.core.postprocess.drop_faint`).
    """
    if n_classes == 3:
        found = classes_to_instances(classes, border_class=2, min_size=min_size)
    elif merge_diagonal:
        found = classes_to_instances(classes == 1, min_size=min_size)
    else:
        foreground = (classes > 0).astype(np.uint8)
        found = classes_to_instances(foreground, border_class=None, min_size=min_size)
    if image is None or not min_contrast:
        return found
    return drop_faint(found, np.asarray(image), min_contrast)


def channels_last(image: Any, axes: str) -> Any:
    """Return an image with axes ``axes`` in the labels' axes order (C moved last)."""
    if "C" not in axes:
        return image
    return np.moveaxis(np.asarray(image), axes.index("C"), -1)


def labels_from_probabilities(
    probabilities: np.ndarray,
    *,
    axes: str | None = None,
    kind: OutputKind = "classes",
    threshold: float = 0.5,
    min_size: int = 0,
    image: Any = None,
    min_contrast: float = DEFAULT_MIN_CONTRAST,
) -> np.ndarray:
    """Labels for display from class probabilities, without running the network again.

    Parameters
    ----------
    probabilities : ndarray
        ``(..., classes)`` as in :attr:`SegmentationResult.probabilities`.
    axes : str, optional
        Axes of the non-class dimensions, e.g. ``"ZYX"`` (default: ``Y`` and ``X`` last).
        Instance labels are made plane by plane over the other axes.
    kind : {"classes", "instances"}
        Class labels (see :func:`class_labels`), or one id per object: for 3-class models
        the interior seeds grow into their border
        (:func:`napari_tiled_unet.core.postprocess.classes_to_instances`); otherwise connected
        foreground regions.  Ids are unique across the planes of a stack.
    threshold : float
        Foreground-probability threshold (see :func:`class_labels`).
    min_size : int
        Instances smaller than this many pixels are dropped.
    image : array-like, optional
        The segmented image, its axes as ``axes`` (channels last allowed, see
        :func:`channels_last`): instances much fainter than the typical object of their
        plane are dropped (see :func:`instances_of`).
    min_contrast : float
        That limit as a fraction of the typical object's contrast; 0 keeps all.

    Returns
    -------
    ndarray
        Class labels (uint8) or instance labels (uint16, uint32 beyond 65535 objects), with
        the shape of ``probabilities`` minus its last axis.
    """
    classes = class_labels(probabilities, threshold=threshold)
    if kind == "classes":
        return classes
    if kind != "instances":
        raise ValueError(f"kind must be 'classes' or 'instances', got {kind!r}")
    axes = axes or "ABDEFGHIJK"[: classes.ndim - 2] + "YX"
    n_classes = np.asarray(probabilities).shape[-1]
    instances = np.zeros(classes.shape, np.uint32)
    source, target = canonical_view(classes, axes), canonical_view(instances, axes)
    offset = 0
    pixels = None if image is None else canonical_view(image, axes)
    for plane in np.ndindex(*source.shape[:-2]):
        values = None if pixels is None else np.asarray(pixels[plane])
        found = instances_of(
            source[plane], n_classes, min_size=min_size, image=values, min_contrast=min_contrast
        )
        target[plane] = np.where(found > 0, found.astype(np.uint32) + offset, 0)
        offset += int(found.max(initial=0))
    return instances.astype(np.uint16 if offset <= np.iinfo(np.uint16).max else np.uint32)


def guess_axes(
    shape: Sequence[int],
    *,
    rgb: bool = False,
    axis_labels: Sequence[str] | None = None,
    input_channels: int | None = None,
) -> str:
    """Guess the axes string of an image layer's data, or return ``""`` when unsure.

    Parameters
    ----------
    shape : sequence of int
        Shape of the data (for RGB layers including the colour axis).
    rgb : bool
        The last axis holds colour channels (napari's ``rgb`` flag).
    axis_labels : sequence of str, optional
        Names of the layer's dimensions (without the colour axis of an RGB layer); used
        when every one of them is a known name such as ``"z"``, ``"y"``, ``"x"``, ``"t"``.
    input_channels : int, optional
        Channels the chosen model expects; tells ``CYX`` from ``ZYX`` in 3D.

    Returns
    -------
    str
        ``"YX"``, ``"ZYX"``, ``"YXC"``, ... or ``""`` for data with four or more axes whose
        meaning cannot be told from the shape (the user must type them).
    """
    ndim = len(shape)
    from_labels = _axes_from_labels(axis_labels, ndim - 1 if rgb else ndim)
    if from_labels:
        return from_labels + ("C" if rgb else "")
    if rgb:
        return {3: "YXC", 4: "ZYXC", 5: "TZYXC"}.get(ndim, "")
    if ndim == 2:
        return "YX"
    if ndim == 3:
        many = input_channels is not None and input_channels > 1
        if many and shape[0] == input_channels:
            return "CYX"
        if many and shape[-1] == input_channels:
            return "YXC"
        return "ZYX"
    return ""


def _axes_from_labels(labels: Sequence[str] | None, ndim: int) -> str:
    if labels is None or len(labels) != ndim:
        return ""
    letters = [_AXIS_NAMES.get(str(name).strip().lower(), "") for name in labels]
    axes = "".join(letters)
    if "" in letters or len(set(axes)) != ndim or "Y" not in axes or "X" not in axes:
        return ""
    return axes


def check_image(
    shape: Sequence[int], axes: str | None, input_channels: int | None, *, rgb: bool = False
) -> AxesLayout:
    """Check an image's axes and channel count against a model before a run.

    Parameters
    ----------
    shape : sequence of int
        The image's shape.
    axes : str or None
        Its axes; empty or None is an error (the guess failed and nobody typed them).
    input_channels : int or None
        Channels the model expects; None checks the axes only.
    rgb : bool
        Only words the message for an RGB layer.

    Returns
    -------
    AxesLayout
        The parsed axes.

    Raises
    ------
    ValueError
        One line that says what is wrong: missing or mismatched axes, or a channel count
        the model does not take (e.g. an RGB image for a 1-channel model).
    """
    if not axes:
        raise ValueError(
            f"the image has {len(shape)} dimensions {tuple(shape)}; type its axes, "
            "e.g. TZYX for a time-lapse of stacks or ZCYX for a stack with channels"
        )
    layout = parse_axes(axes, tuple(shape))
    have = 1 if layout.channel_axis is None else int(shape[layout.channel_axis])
    if input_channels is not None and have != input_channels:
        what = f"is RGB ({have} channels)" if rgb else f"has {have} channel(s)"
        raise ValueError(
            f"the model expects {input_channels} channel(s) but the image {what}; "
            f"choose a {input_channels}-channel image or a model made for this one"
        )
    return layout


def current_plane(axes: str, shape: Sequence[int], position: Sequence[float]) -> tuple[int, ...]:
    """Return the plane index (along the non-YX, non-channel axes) at a data position.

    Parameters
    ----------
    axes : str
        The image's axes.
    shape : sequence of int
        The image's shape.
    position : sequence of float
        A point in data coordinates, one value per axis (values of the Y, X and channel
        axes are ignored; a missing trailing channel value is allowed).

    Returns
    -------
    tuple of int
        Rounded and clipped to the image, in the order of the run's plane axes.
    """
    layout = parse_axes(axes, tuple(shape))
    index = []
    for letter in layout.plane_axes:
        axis = layout.axes.index(letter)
        value = round(float(position[axis])) if axis < len(position) else 0
        index.append(min(max(value, 0), int(shape[axis]) - 1))
    return tuple(index)


def kept_layer_axes(axes: str, layer_ndim: int) -> list[int]:
    """Which of an image layer's dimensions its output layers keep.

    A layer's per-dimension metadata (scale, translate, units, ...) covers all data axes,
    except the colour axis of an RGB layer.  Outputs have no channel axis, so it is dropped
    when the layer has one; an RGB layer's dimensions all carry over.
    """
    layout = parse_axes(axes, (1,) * len(axes))
    if layer_ndim == len(axes) and layout.channel_axis is not None:
        return [i for i in range(layer_ndim) if i != layout.channel_axis]
    if layer_ndim in (len(axes), len(axes) - 1):
        return list(range(layer_ndim))
    raise ValueError(f"a layer with {layer_ndim} dimensions cannot have axes {axes!r}")


def plan_for_image(
    shape: Sequence[int],
    layout: AxesLayout,
    spec: NetworkSpec,
    *,
    tile_size: int | None = None,
    factor: float = 1.0,
    memory_budget: int | None = None,
    precision: str = "float32",
    tta: Sequence[str] = (),
) -> TilePlan:
    """Plan the tiles of one plane of an image (rounding a tile size silently).

    ``factor`` is the resampling to the model's object size (:func:`rescale_for_image`):
    the plane is tiled at its resampled size.  An automatic tile follows this machine's
    timings of the network at ``precision`` (and ``tta``) where they were measured
    (:mod:`napari_tiled_unet.core.autotune`).

    The plan itself shows the size actually used, so the warning that
    :func:`napari_tiled_unet.plan_tiles` emits for an invalid size is not repeated.
    """
    size = (int(shape[layout.axes.index("Y")]), int(shape[layout.axes.index("X")]))
    size = scaled_shape(size, factor)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        timings = None if tile_size else cached_timings(spec, precision, tuple(tta))
        return plan_tiles(
            size, spec, tile_size=tile_size or None, memory_budget=memory_budget, timings=timings
        )


def planes_from(
    axes: str, shape: Sequence[int], position: Sequence[float]
) -> list[tuple[int, ...]]:
    """Return every plane index of an image, the plane at ``position`` first.

    The others follow in their usual order.  A live run that segments the plane on view
    first shows its labels without waiting for the planes before it; each plane is
    segmented on its own, so the order does not change the result.

    Parameters
    ----------
    axes, shape, position
        As for :func:`current_plane`.

    Returns
    -------
    list of tuple of int
        Plane indices in the order of the run's plane axes (``[()]`` for a single plane).

    Examples
    --------
    >>> planes_from("ZYX", (3, 8, 8), (1.0, 0.0, 0.0))
    [(1,), (0,), (2,)]
    """
    layout = parse_axes(axes, tuple(shape))
    first = current_plane(axes, shape, position)
    counts = [int(shape[layout.axes.index(a)]) for a in layout.plane_axes]
    return [first, *(plane for plane in np.ndindex(*counts) if plane != first)]


def n_planes(shape: Sequence[int], layout: AxesLayout) -> int:
    """Return the number of planes (2D images) along the non-YX, non-channel axes."""
    return math.prod(int(shape[layout.axes.index(a)]) for a in layout.plane_axes)


def live_batch_size(plan: TilePlan, updates: int = 8) -> int:
    """Return a batch size that shows at least ``updates`` steps per plane when it can.

    Batches are capped so that a live view fills in visibly; on a CPU a smaller batch costs
    no speed (a batch of tiles is computed one after the other anyway).
    """
    return max(1, min(plan.batch_size, math.ceil(plan.n_tiles / max(updates, 1))))


def _format_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")  # pragma: no cover


def describe_plan(plan: TilePlan, n_planes: int = 1, batch_size: int | None = None) -> str:
    """One line for users: tiles per plane, their size, and the activation memory.

    Example: ``"9 tiles of 252 x 252 px per plane x 20 planes; about 1.2 GB of memory"``;
    a tile chosen from this machine's timings adds ``" (timed here)"`` to its size.
    """
    per_tile = plan.memory_per_batch // max(plan.batch_size, 1)
    memory = per_tile * (plan.batch_size if batch_size is None else batch_size)
    tiles = f"{plan.n_tiles} tile{'s' if plan.n_tiles != 1 else ''}"
    where = f" per plane x {n_planes} planes" if n_planes > 1 else ""
    size = f"{plan.tile_in[0]} x {plan.tile_in[1]} px"
    if plan.chosen_by == "timings":
        size += " (timed here)"
    return f"{tiles} of {size}{where}; about {_format_bytes(memory)} of memory"


def rescale_for_image(
    data: np.ndarray,
    layout: AxesLayout,
    model_size: float | None,
    object_size: str | float | None,
    *,
    plane: tuple[int, ...] | None = None,
) -> Rescale:
    """How a run would resample the image to the model's object size (see :func:`segment`).

    ``object_size`` is what the user typed ("auto", "none" or px; None or "auto" mean the
    default).  With ``plane`` (an index over the plane axes) the size is estimated from
    that plane only, as a run of the current plane would see it.
    """
    from napari_tiled_unet.core.axes import to_canonical
    from napari_tiled_unet.core.prepare import estimation_planes

    canonical = to_canonical(data, layout)
    if object_size == "auto":
        object_size = None

    def planes() -> list[np.ndarray]:
        if plane is not None:
            return estimation_planes((1,), lambda _: canonical[plane], count=1)
        return estimation_planes(canonical.shape[:-3], lambda i: canonical[i])

    return plan_rescale(object_size, model_size, planes)
