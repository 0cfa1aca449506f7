"""Overlap-tile inference: ``iter_segment`` (a generator of progress events) and ``segment``."""

from __future__ import annotations

import os
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

import numpy as np

from napari_tiled_unet._axes import AxesLayout, parse_axes, to_canonical
from napari_tiled_unet.normalize import PercentileNormalizer, normalizer_from_dict
from napari_tiled_unet.tiling import TilePlan, cut_tile, plan_tiles

__all__ = ["SegmentationResult", "TileProgress", "iter_segment", "segment"]


@dataclass(frozen=True)
class TileProgress:
    """Progress of a run, yielded after every batch of tiles.

    Attributes
    ----------
    plane : tuple of int
        Index of the current plane along the leading (non-YX) axes; ``()`` for a 2D image.
    plane_number, n_planes : int
        Position (0-based) of that plane and how many planes the run covers.
    tiles_done, n_tiles : int
        Tiles finished in this plane and tiles per plane.
    region : tuple of slice
        The ``(Y, X)`` region of the plane just written.
    probabilities : numpy.ndarray
        The class probabilities just written to ``region`` (a view, ``(y, x, classes)``).
    """

    plane: tuple[int, ...]
    plane_number: int
    n_planes: int
    tiles_done: int
    n_tiles: int
    region: tuple[slice, slice]
    probabilities: np.ndarray

    @property
    def fraction(self) -> float:
        """Overall fraction of the run completed, in [0, 1]."""
        return (self.plane_number + self.tiles_done / self.n_tiles) / self.n_planes


@dataclass(frozen=True)
class SegmentationResult:
    """Result of :func:`segment`.

    Attributes
    ----------
    probabilities : numpy.ndarray
        Softmax class maps, float32, the image's non-channel axes followed by classes.
    axes : str
        Axes of :attr:`labels` (the image's axes without the channel axis).
    class_names : tuple of str
        Names of the classes, in the order of the last axis of ``probabilities``.
    plan : TilePlan
        The tiling that was used.
    """

    probabilities: np.ndarray
    axes: str
    class_names: tuple[str, ...]
    plan: TilePlan

    @property
    def labels(self) -> np.ndarray:
        """Class labels (argmax of the probabilities), smallest unsigned dtype."""
        return class_labels(self.probabilities)


def class_labels(probabilities: np.ndarray) -> np.ndarray:
    """Argmax over the last axis, as the smallest unsigned dtype that holds the classes."""
    dtype = np.min_scalar_type(max(probabilities.shape[-1] - 1, 0))
    return np.argmax(probabilities, axis=-1).astype(dtype)


def _resolve_model(model: Any) -> Any:
    from napari_tiled_unet.model.files import UNetModel, load_model, wrap_keras_model

    if isinstance(model, UNetModel):
        return model
    if isinstance(model, (str, os.PathLike)):
        return load_model(model)
    if hasattr(model, "inputs") and hasattr(model, "layers"):
        return wrap_keras_model(model)
    raise TypeError(
        f"model must be a UNetModel, a Keras model or a model file path, "
        f"got {type(model).__name__}"
    )


def _resolve_normalizer(normalize: Any, unet: Any) -> PercentileNormalizer | None:
    if normalize is None or normalize == "none":
        return None
    if isinstance(normalize, PercentileNormalizer):
        return normalize
    if normalize == "auto":
        return normalizer_from_dict(unet.metadata.normalization)
    if normalize == "percentile":
        return PercentileNormalizer()
    raise ValueError(
        f"normalize must be 'auto', 'percentile', None or a PercentileNormalizer, "
        f"got {normalize!r}"
    )


def _check_channels(canonical: Any, layout: AxesLayout, unet: Any) -> None:
    have, want = canonical.shape[-1], unet.spec.input_channels
    if have != want:
        where = (
            f"axis {layout.axes[layout.channel_axis]}"
            if layout.channel_axis is not None
            else "no channel axis"
        )
        raise ValueError(
            f"the image has {have} channel(s) ({where}) but the model expects "
            f"{want}; pick {'one channel' if want == 1 else f'{want} channels'} "
            "or a model made for this image"
        )


def iter_segment(
    model: Any,
    image: Any,
    *,
    axes: str | None = None,
    tile_size: int | tuple[int, int] | None = None,
    memory_budget: int | None = None,
    batch_size: int | None = None,
    normalize: Any = "auto",
    planes: list[tuple[int, ...]] | None = None,
) -> Generator[TileProgress, None, SegmentationResult]:
    """Segment ``image`` tile by tile, yielding a :class:`TileProgress` after each batch.

    Same parameters as :func:`segment`, plus ``planes``: indices along the leading axes to
    process (default all; the others stay zero in the result).  Closing the generator at a
    yield (cancelling) stops the work cleanly.  The :class:`SegmentationResult` is the
    generator's return value (``StopIteration.value``).
    """
    unet = _resolve_model(model)
    layout = parse_axes(axes, tuple(np.shape(image)))
    canonical = to_canonical(image if hasattr(image, "transpose") else np.asarray(image), layout)
    _check_channels(canonical, layout, unet)
    normalizer = _resolve_normalizer(normalize, unet)
    plane_shape, (height, width) = canonical.shape[:-3], canonical.shape[-3:-1]
    plan = plan_tiles(
        (height, width),
        unet.spec,
        tile_size=tile_size,
        memory_budget=memory_budget,
        batch_size=batch_size,
    )
    probs = np.zeros((*plane_shape, height, width, unet.spec.num_classes), np.float32)
    todo = list(np.ndindex(*plane_shape)) if planes is None else [tuple(p) for p in planes]
    stats = None
    if normalizer is not None and normalizer.per == "stack":
        stats = normalizer.statistics(np.asarray(canonical))
    for number, index in enumerate(todo):
        plane = np.asarray(canonical[index], dtype=np.float32)
        if normalizer is not None:
            lo, hi = stats if stats is not None else normalizer.statistics(plane)
            plane = normalizer.apply(plane, lo, hi)
        done = 0
        for batch in plan.batches():
            inputs = np.stack([cut_tile(plane, tile, plan) for tile in batch])
            outputs = unet.predict_batch(inputs)
            for tile, out in zip(batch, outputs):
                probs[index][tile.owned] = out[tile.owned_in_tile]
            done += len(batch)
            region = (
                slice(batch[0].owned[0].start, batch[-1].owned[0].stop),
                slice(0, width) if len(batch) > 1 else batch[0].owned[1],
            )
            yield TileProgress(
                index, number, len(todo), done, plan.n_tiles, region, probs[index][region]
            )
    probs = np.transpose(probs, [*layout.output_order(), probs.ndim - 1])
    return SegmentationResult(probs, layout.output_axes, unet.metadata.class_names, plan)


def segment(
    model: Any,
    image: Any,
    *,
    axes: str | None = None,
    tile_size: int | tuple[int, int] | None = None,
    memory_budget: int | None = None,
    batch_size: int | None = None,
    normalize: Any = "auto",
) -> SegmentationResult:
    """Segment an image with a U-Net using the paper's overlap-tile strategy.

    The image is covered by output tiles aligned to the network's pooling grid; each tile's
    input carries the context the valid convolutions consume (mirrored at the image border),
    and the centre crops are stitched.  The result equals one pass of the model over the
    whole mirror-padded image, for any tile size.

    Parameters
    ----------
    model : UNetModel, keras.Model or path-like
        The network, or a ``.keras`` / ``.h5`` file to load.
    image : array-like
        Any real dtype; converted to float32.
    axes : str, optional
        One letter per dimension, e.g. ``"YX"``, ``"YXC"``, ``"ZYX"``, ``"TZYXC"``.  Axes other
        than Y, X and C are processed plane by plane.  Required unless the image is 2D.
    tile_size : int or (int, int), optional
        Input tile size; invalid sizes are rounded to the nearest valid one with a warning.
        Default: chosen from ``memory_budget``.
    memory_budget : int, optional
        Activation memory per network call in bytes (default 2 GiB).
    batch_size : int, optional
        Tiles per network call (default: as many as the budget allows, at most 16).
    normalize : {"auto", "percentile"}, PercentileNormalizer or None
        ``"auto"`` uses the model's stored normalisation (percentile 1 / 99.8 per plane when
        it has none); None feeds the data unchanged (as float32).

    Returns
    -------
    SegmentationResult
        ``.probabilities`` (float32, non-channel axes + classes) and ``.labels``.
    """
    steps = iter_segment(
        model,
        image,
        axes=axes,
        tile_size=tile_size,
        memory_budget=memory_budget,
        batch_size=batch_size,
        normalize=normalize,
    )
    while True:
        try:
            next(steps)
        except StopIteration as stop:
            return stop.value
