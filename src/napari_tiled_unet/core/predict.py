"""Overlap-tile inference: ``iter_segment`` (a generator of progress events) and ``segment``.

The unit of work is one plane: :func:`iter_plane` runs the network over the tiles of one
``(Y, X, C)`` plane, batch by batch, and hands back the network outputs; callers stitch them
(:func:`stitch`) into an array, a file or a band buffer.  :func:`iter_segment` is the
whole-array front end; the batch engine and the Dask path reuse the same pieces so that every
route gives the same numbers.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from napari_tiled_unet.core.memory import predict_tiles
from napari_tiled_unet.core.normalize import (
    Normalizer,
    count_nonfinite,
    network_input,
    warn_nonfinite,
)
from napari_tiled_unet.core.options import SegmentOptions
from napari_tiled_unet.core.prepare import (
    Scale,
    prepare,
    spread_out,
    stack_statistics,
)
from napari_tiled_unet.core.sizing import Rescale, resize
from napari_tiled_unet.core.tiling import Tile, TilePlan

__all__ = [
    "SegmentationResult",
    "TileProgress",
    "class_labels",
    "drain",
    "iter_plane",
    "iter_segment",
    "rescaled_plane",
    "segment",
    "segment_plane",
]


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
    probabilities : numpy.ndarray or dask.array.Array
        Softmax class maps, float32, the image's non-channel axes followed by classes
        (a lazy dask array when :func:`segment` was called with ``lazy=True``).
    axes : str
        Axes of :attr:`labels` (the image's axes without the channel axis).
    class_names : tuple of str
        Names of the classes, in the order of the last axis of ``probabilities``.
    plan : TilePlan
        The tiling that was used (on the model's grid when the image was resampled).
    rescale : Rescale
        How the image was resampled to the model's object size (and back).
    int8 : Int8Gate, optional
        For a run that asked for int8: how int8 compared with float32 on held-out tiles of
        the image and which precision was used (:class:`~napari_tiled_unet.core.int8.Int8Gate`).
    """

    probabilities: Any
    axes: str
    class_names: tuple[str, ...]
    plan: TilePlan
    rescale: Rescale = field(default_factory=Rescale)
    int8: Any = None

    @property
    def labels(self) -> Any:
        """Class labels (argmax of the probabilities), smallest unsigned dtype."""
        return class_labels(self.probabilities)


def class_labels(probabilities: Any) -> Any:
    """Argmax over the last axis, as the smallest unsigned dtype that holds the classes."""
    dtype = np.min_scalar_type(max(probabilities.shape[-1] - 1, 0))
    return np.argmax(probabilities, axis=-1).astype(dtype)


def normalized_plane(
    plane: Any, normalizer: Normalizer | None, scale: Scale | None = None
) -> np.ndarray:
    """Load a ``(Y, X, C)`` plane as float32, normalised with ``scale`` or its own statistics.

    NaN and infinite pixels become 0 (see :func:`~napari_tiled_unet.core.normalize.network_input`);
    a plane without any finite value is a ValueError.
    """
    data = np.asarray(plane)
    if normalizer is None:
        if data.size and count_nonfinite(data) == data.size:
            raise ValueError(
                f"no finite pixel value: all {data.size} are NaN or infinite; check the image "
                "or replace its NaN values before segmenting"
            )
        return network_input(data)
    lo, hi = scale if scale is not None else normalizer.statistics(data)
    return normalizer.apply(data, lo, hi)


def iter_plane(
    unet: Any, plane: Any, plan: TilePlan, *, scale: Scale | None = None
) -> Iterator[tuple[list[Tile], np.ndarray]]:
    """Run the network over the tiles of one ``(Y, X, C)`` plane, one batch at a time.

    Parameters
    ----------
    unet : UNetModel
        The network.
    plane : array-like
        The plane; only each tile's bounding box is read, so a memory-mapped or lazy plane
        is never loaded whole.
    plan : TilePlan
        The tile plan of the plane.
    scale : (low, high) arrays, optional
        Normalisation applied to each tile as it is cut (``(x - low) / (high - low)``, the
        same arithmetic as :meth:`PercentileNormalizer.apply`); None feeds float32 data.

    A call that runs out of memory is retried with smaller batches and tiles, with the
    same result (:func:`~napari_tiled_unet.core.memory.predict_tiles`).

    Yields
    ------
    tiles : list of Tile
        The tiles of the batch.
    outputs : numpy.ndarray
        Their network outputs, ``(len(tiles), *plan.tile_out, classes)`` float32; stitch
        each tile's ``owned_in_tile`` part into ``owned`` (see :func:`stitch`).
    """
    for batch in plan.batches():
        yield batch, predict_tiles(unet, plane, plan, batch, scale=scale)


def stitch(out: np.ndarray, tiles: list[Tile], outputs: np.ndarray) -> None:
    """Copy each tile's owned part of ``outputs`` into the ``(Y, X, classes)`` array ``out``."""
    for tile, result in zip(tiles, outputs):
        out[tile.owned] = result[tile.owned_in_tile]


def segment_plane(
    unet: Any, plane: Any, plan: TilePlan, *, scale: Scale | None = None
) -> np.ndarray:
    """Class probabilities ``(Y, X, classes)`` float32 of one plane (see :func:`iter_plane`)."""
    out = np.zeros((*plan.shape, unet.spec.num_classes), np.float32)
    for tiles, outputs in iter_plane(unet, plane, plan, scale=scale):
        stitch(out, tiles, outputs)
    return out


def rescaled_plane(
    unet: Any, plane: np.ndarray, plan: TilePlan, shape: tuple[int, int]
) -> Generator[int, None, np.ndarray]:
    """Segment a normalised ``(Y, X, C)`` plane on the model's grid ``plan.shape``.

    The plane is resampled to ``plan.shape``, segmented there with the exact overlap-tile
    engine, and the probabilities are resampled back to ``shape`` (the plane's own).
    Yields the number of tiles done after each batch; returns ``(*shape, classes)`` float32.
    """
    scaled = resize(plane, plan.shape)
    out = np.zeros((*plan.shape, unet.spec.num_classes), np.float32)
    done = 0
    for tiles, outputs in iter_plane(unet, scaled, plan):
        stitch(out, tiles, outputs)
        done += len(tiles)
        yield done
    return resize(out, shape)


def iter_segment(
    model: Any,
    image: Any,
    options: SegmentOptions | None = None,
    *,
    planes: list[tuple[int, ...]] | None = None,
    plan: TilePlan | None = None,
    **keywords: Any,
) -> Generator[TileProgress, None, SegmentationResult]:
    """Segment ``image`` tile by tile, yielding a :class:`TileProgress` after each batch.

    Same parameters as :func:`napari_tiled_unet.segment` (the options as a
    :class:`~napari_tiled_unet.core.options.SegmentOptions` or as keywords), plus
    ``planes``: indices along the leading axes to process (default all; the others stay
    zero in the result), and ``plan``: a tile plan made beforehand for one plane (see
    :func:`~napari_tiled_unet.core.prepare.prepare`).  Closing the generator at a yield
    (cancelling) stops the work cleanly.  The :class:`SegmentationResult` is the
    generator's return value (``StopIteration.value``).  When the image is resampled to
    the model's object size, a plane's probabilities arrive in one event once it is done.
    """
    job = prepare(model, image, options, plan=plan, **keywords)
    plan, normalizer = job.plan, job.normalizer
    height, width = job.image_shape
    todo = list(np.ndindex(*job.plane_shape)) if planes is None else [tuple(p) for p in planes]
    stack_scale = None
    if normalizer is not None and normalizer.per == "stack":
        stack_scale = stack_statistics(job)
    if not job.unet.calibrated and todo:
        job = dataclasses.replace(job, unet=_int8_runner(job, todo, stack_scale))
    unet = job.unet
    probs = np.zeros((*job.plane_shape, height, width, unet.spec.num_classes), np.float32)
    bad = 0
    for number, index in enumerate(todo):
        raw = np.asarray(job.canonical[index])
        bad += count_nonfinite(raw)
        plane = normalized_plane(raw, normalizer, stack_scale)
        if job.rescale.active:
            yield from _rescaled_events(job, plane, probs, index, (number, len(todo)))
            continue
        done = 0
        for batch, outputs in iter_plane(unet, plane, plan):
            stitch(probs[index], batch, outputs)
            done += len(batch)
            region = (
                slice(batch[0].owned[0].start, batch[-1].owned[0].stop),
                slice(0, width) if len(batch) > 1 else batch[0].owned[1],
            )
            yield TileProgress(
                index, number, len(todo), done, plan.n_tiles, region, probs[index][region]
            )
    total = len(todo) * height * width * int(job.canonical.shape[-1])
    warn_nonfinite(bad, total, normalized=normalizer is not None)
    probs = np.transpose(probs, [*job.layout.output_order(), probs.ndim - 1])
    names = unet.metadata.class_names
    return SegmentationResult(probs, job.layout.output_axes, names, plan, job.rescale, unet.int8)


def _int8_runner(job: Any, todo: list[tuple[int, ...]], stack_scale: Scale | None) -> Any:
    """Return the run's int8 model, calibrated on up to 3 planes normalised as they run.

    The planes are spread over the planes to do in their stack order, whatever order they
    run in (a live run starts with the plane on view), so every entry point calibrates on
    the same planes.
    """
    from napari_tiled_unet.core.int8 import int8_model

    picks = spread_out(sorted(todo), 3)
    sources = []
    for index in picks:
        plane = normalized_plane(np.asarray(job.canonical[index]), job.normalizer, stack_scale)
        sources.append((resize(plane, job.plan.shape) if job.rescale.active else plane, None))
    return int8_model(job.unet, sources, job.plan)


def _rescaled_events(
    job: Any, plane: np.ndarray, probs: np.ndarray, index: tuple[int, ...], at: tuple[int, int]
) -> Iterator[TileProgress]:
    """Progress of one resampled plane: empty regions while it runs, then all of it."""
    plan, nothing = job.plan, (slice(0, 0), slice(0, 0))
    steps = rescaled_plane(job.unet, plane, plan, job.image_shape)
    while True:
        try:
            done = next(steps)
        except StopIteration as finished:
            probs[index] = finished.value
            break
        if done < plan.n_tiles:
            yield TileProgress(index, *at, done, plan.n_tiles, nothing, probs[index][nothing])
    whole = (slice(0, job.image_shape[0]), slice(0, job.image_shape[1]))
    yield TileProgress(index, *at, plan.n_tiles, plan.n_tiles, whole, probs[index])


def segment(
    model: Any, image: Any, options: SegmentOptions | None = None, **keywords: Any
) -> SegmentationResult:
    """Segment an in-memory (or lazily indexed) image: :func:`iter_segment`, drained.

    The engine of :func:`napari_tiled_unet.segment`, which documents the options and adds
    zarr paths and dask results on top.
    """
    return drain(iter_segment(model, image, options, **keywords))


def drain(steps: Generator[Any, None, Any], each: Callable[[Any], Any] | None = None) -> Any:
    """Run a progress generator to its end and return its return value.

    ``each`` is called with every event on the way (e.g. a progress bar's update).
    """
    while True:
        try:
            event = next(steps)
        except StopIteration as stop:
            return stop.value
        if each is not None:
            each(event)
