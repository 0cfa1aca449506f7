"""Per-file planning and the in-process plane loop of the batch engine (ring 2).

:func:`plan_file` checks one open TIFF against the model and decides the output layout;
:func:`local_pages` segments its planes in file order and hands back rows to write
(:class:`Rows`) and progress ticks (:class:`Tick`).  Planes whose working memory exceeds
``max_plane_bytes`` are streamed: tiles are read box by box and written tile row by tile row,
and their percentiles are computed exactly in streaming passes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from napari_tiled_unet.batch.files import PlaneReader, TiffSource, axes_example
from napari_tiled_unet.core.axes import AxesLayout, parse_axes
from napari_tiled_unet.core.percentile import blocks_reducer, normalizer_statistics
from napari_tiled_unet.core.predict import (
    class_labels,
    iter_plane,
    normalized_plane,
    rescaled_plane,
    stitch,
)
from napari_tiled_unet.core.prepare import (
    Scale,
    check_channels,
    estimation_planes,
    resolve_normalizer,
    runtime_of,
    tuned,
)
from napari_tiled_unet.core.sizing import Rescale, plan_rescale, scaled_shape
from napari_tiled_unet.core.tiling import TilePlan, plan_tiles

__all__ = ["FileJob", "Rows", "Tick", "local_pages", "plan_file", "streamed_scale"]

_BAND_VALUES = 2**24  # values per block when streaming statistics


@dataclass(frozen=True)
class Tick:
    """``done`` of ``total`` tiles (or chunks) of page ``page`` are finished."""

    page: int
    done: int
    total: int


@dataclass(frozen=True)
class Rows:
    """Rows ``row, row + 1, ...`` of page ``page``: labels and (optionally) probabilities.

    ``image`` is the whole input plane (Y, X, channels) where the labels are a whole plane.
    """

    page: int
    row: int
    labels: np.ndarray
    probabilities: np.ndarray | None
    image: np.ndarray | None = None


@dataclass(frozen=True)
class FileJob:
    """One input checked against the model, with its output layout.

    Attributes
    ----------
    source : TiffSource
        The open input.
    axes : str
        Axes of the input as used.
    layout : AxesLayout
        Their roles.
    plan : TilePlan
        Tile plan of one plane.
    normalizer : PercentileNormalizer or None
        Intensity normalisation.
    label_axes : str
        Axes of the outputs: the plane axes (T before Z when the input has only those, so
        that the labels are an ImageJ hyperstack), then YX.
    label_shape : tuple of int
        Shape of the labels.
    label_dtype : numpy.dtype
        uint8 or uint16.
    order : list of tuple of int
        The input's plane indices (over ``layout.plane_axes``) in output page order.
    streamed : bool
        Whether planes are read and written tile row by tile row.
    rescale : Rescale
        How planes are resampled to the model's object size (``plan`` is on that grid).
    """

    source: TiffSource
    axes: str
    layout: AxesLayout
    plan: TilePlan
    normalizer: Any
    label_axes: str
    label_shape: tuple[int, ...]
    label_dtype: np.dtype
    order: list[tuple[int, ...]]
    streamed: bool
    rescale: Rescale = field(default_factory=Rescale)

    def details(self, unet: Any = None) -> dict[str, Any]:
        """Return what the run record keeps about the job (run by ``unet``, if given)."""
        plan = self.plan
        runs = {}
        if unet is not None:
            from napari_tiled_unet.core.memory import fallback_of

            runs = {
                "precision": unet.precision,
                "runtime": runtime_of(unet),
                "tta": list(unet.tta),
                "network_passes_per_tile": max(1, len(unet.tta)),
                "memory_fallback": fallback_of(unet, plan),
            }
            if unet.int8 is not None:
                runs["int8"] = unet.int8.to_dict()
        return {
            "output_axes": self.label_axes,
            "calibration": self.source.calibration.to_dict(),
            "tile_in": list(plan.tile_in),
            "tile_out": list(plan.tile_out),
            "tile_chosen_by": plan.chosen_by,
            "batch_size": plan.batch_size,
            "tiles_per_plane": plan.n_tiles,
            "memory_budget_bytes": plan.memory_budget,
            "activation_estimate_bytes": plan.memory_per_batch,
            "activation_estimate_runtime": plan.runtime,
            **runs,
            "normalization": None if self.normalizer is None else self.normalizer.to_dict(),
            "streamed": self.streamed,
            "object_size": self.rescale.to_dict() | {"summary": self.rescale.describe()},
        }


def plan_file(source: TiffSource, unet: Any, options: Any) -> FileJob:
    """Check ``source`` against ``unet`` and plan its outputs (one-line ValueError if unfit)."""
    axes = (options.axes or source.axes).upper()
    if not axes:
        raise ValueError(
            f"cannot tell the axes of a {len(source.shape)}D image {source.shape}; "
            f"pass one letter per axis, e.g. --axes {axes_example(len(source.shape))}"
        )
    layout = parse_axes(axes, source.shape)
    sizes = dict(zip(axes, source.shape))
    channels = sizes[axes[layout.channel_axis]] if layout.channel_axis is not None else 1
    check_channels(channels, layout, unet)
    if sizes["Y"] < 1 or sizes["X"] < 1:
        raise ValueError(f"the image is empty {source.shape}; check the file")
    classes = unet.spec.num_classes
    per_pixel = channels * (4 + source.dtype.itemsize) + classes * 8
    streamed = sizes["Y"] * sizes["X"] * per_pixel > options.max_plane_bytes
    rescale = _rescale(source, layout, unet, options, streamed)
    plan = plan_tiles(
        scaled_shape((sizes["Y"], sizes["X"]), rescale.factor),
        unet.spec,
        tile_size=options.tile_size,
        memory_budget=options.memory_budget,
        batch_size=options.batch_size,
        timings=tuned(unet) if options.tile_size is None else None,
        runtime=runtime_of(unet),
    )
    normalizer = resolve_normalizer(options.normalize, unet)
    plane_axes = layout.plane_axes
    if set(plane_axes) <= set("TZ"):
        plane_axes = "".join(a for a in "TZ" if a in plane_axes)
    counts = [sizes[a] for a in plane_axes]
    order = [
        tuple(index[plane_axes.index(a)] for a in layout.plane_axes)
        for index in np.ndindex(*counts)
    ]
    return FileJob(
        source,
        axes,
        layout,
        plan,
        normalizer,
        plane_axes + "YX",
        (*counts, sizes["Y"], sizes["X"]),
        np.dtype(np.min_scalar_type(max(classes - 1, 0))),
        order,
        streamed,
        rescale,
    )


def _rescale(
    source: TiffSource, layout: AxesLayout, unet: Any, options: Any, streamed: bool
) -> Rescale:
    """Resampling of this file's planes to the model's object size (estimated per file)."""
    if streamed:  # planes too large to hold whole are segmented at their own scale
        if options.object_size not in (None, "none"):
            raise ValueError(
                "this file's planes are too large to resample whole; use --object-size none"
            )
        return Rescale(model_size=unet.metadata.object_size)
    counts = tuple(source.shape[layout.axes.index(a)] for a in layout.plane_axes)
    return plan_rescale(
        options.object_size,
        unet.metadata.object_size,
        lambda: estimation_planes(counts, lambda i: np.asarray(PlaneReader(source, i, layout))),
    )


def _bands(reader: PlaneReader) -> Iterator[np.ndarray]:
    """Yield the plane in blocks of whole rows, each ``(n, channels)``."""
    height, width, channels = reader.shape
    rows = max(1, _BAND_VALUES // (width * channels))
    for y in range(0, height, rows):
        yield reader[y : y + rows, :].reshape(-1, channels)


def streamed_scale(job: FileJob, readers: list[PlaneReader]) -> Scale:
    """Exact percentiles over the given planes, read band by band."""
    return normalizer_statistics(
        job.normalizer,
        blocks_reducer(lambda: (band for r in readers for band in _bands(r))),
        dtype=job.source.dtype,
        channels=readers[0].shape[2],
        count=int(np.prod(readers[0].shape[:2])) * len(readers),
    )


def _whole_plane(
    job: FileJob, unet: Any, reader: PlaneReader, page: int, scale: Scale | None, probs: bool
) -> Iterator[Tick | Rows]:
    plan = job.plan
    raw = np.asarray(reader)
    plane = normalized_plane(raw, job.normalizer, scale)
    if job.rescale.active:
        for item in _rescaled(job, unet, plane, page, probs):
            yield dataclasses.replace(item, image=raw) if isinstance(item, Rows) else item
        return
    out = np.zeros((*plan.shape, unet.spec.num_classes), np.float32)
    done = 0
    for tiles, outputs in iter_plane(unet, plane, plan):
        stitch(out, tiles, outputs)
        done += len(tiles)
        if done < plan.n_tiles:
            yield Tick(page, done, plan.n_tiles)
    yield Rows(page, 0, class_labels(out), out if probs else None, raw)
    yield Tick(page, done, plan.n_tiles)


def _rescaled(
    job: FileJob, unet: Any, plane: np.ndarray, page: int, probs: bool
) -> Iterator[Tick | Rows]:
    plan = job.plan
    height, width = job.label_shape[-2:]
    steps = rescaled_plane(unet, plane, plan, (height, width))
    while True:
        try:
            done = next(steps)
        except StopIteration as finished:
            out = finished.value
            break
        if done < plan.n_tiles:
            yield Tick(page, done, plan.n_tiles)
    yield Rows(page, 0, class_labels(out), out if probs else None)
    yield Tick(page, plan.n_tiles, plan.n_tiles)


def _streamed_plane(
    job: FileJob, unet: Any, reader: PlaneReader, page: int, scale: Scale | None, probs: bool
) -> Iterator[Tick | Rows]:
    plan = job.plan
    if job.normalizer is not None and scale is None:
        scale = streamed_scale(job, [reader])
    columns, width = len(plan.origins[1]), plan.shape[1]
    bands: dict[int, list[Any]] = {}
    done = 0
    for tiles, outputs in iter_plane(unet, reader, plan, scale=scale):
        for tile, result in zip(tiles, outputs):
            ys, xs = tile.owned
            band = bands.setdefault(
                ys.start, [np.zeros((ys.stop - ys.start, width, result.shape[-1]), np.float32), 0]
            )
            band[0][:, xs] = result[tile.owned_in_tile]
            band[1] += 1
            if band[1] == columns:
                data = bands.pop(ys.start)[0]
                yield Rows(page, ys.start, class_labels(data), data if probs else None)
        done += len(tiles)
        if done < plan.n_tiles:
            yield Tick(page, done, plan.n_tiles)
    yield Tick(page, done, plan.n_tiles)


def local_pages(job: FileJob, unet: Any, options: Any) -> Iterator[Tick | Rows]:
    """Segment the planes of ``job`` in this process, in output page order."""
    readers = (PlaneReader(job.source, index, job.layout) for index in job.order)
    stack_scale = None
    if job.normalizer is not None and job.normalizer.per == "stack":
        everything = [PlaneReader(job.source, index, job.layout) for index in job.order]
        stack_scale = streamed_scale(job, everything)
    segment = _streamed_plane if job.streamed else _whole_plane
    for page, reader in enumerate(readers):
        yield from segment(job, unet, reader, page, stack_scale, options.probabilities)
