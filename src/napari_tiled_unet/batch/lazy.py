"""Lazy segmentation with dask: huge images and stacks as graphs of plane or chunk tasks.

:func:`segment_lazy` (behind ``segment(..., lazy=True)`` and ``segment_to_zarr``) returns
dask arrays whose chunks are computed on demand, so a napari layer backed by dask or zarr is
never loaded whole and the same graph runs on a threaded scheduler or a Dask distributed cluster.

- A plane that fits in one chunk is one task, which runs exactly the code of the in-memory
  engine (bit-identical results).
- A huge plane is split into output chunks whose edges are tile origins of the plane's own
  tile plan (multiples of the network's alignment), and every chunk reads its input with
  dask's ``map_overlap`` and the halo as overlap, after the plane has been mirror-padded like
  the in-memory engine does (numpy ``"reflect"``).  Each chunk runs the same tiles as the
  whole-plane plan, so results equal the in-memory ones up to float rounding of batch
  composition.  Percentile normalisation of chunked planes reads the data once beforehand
  (exact percentiles in a few streaming passes).
- ``precision="int8"`` is calibrated before the graph is built, on up to 3 planes spread
  over the stack (huge planes: only the calibration tiles are read), and its tasks get the
  quantised model in an opaque holder; they run in this process (threaded scheduler), so a
  Dask distributed client is refused up front.

``dask`` and ``zarr`` are imported when a function needs them.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import numpy as np

from napari_tiled_unet.batch.modelref import ModelRef, get_model
from napari_tiled_unet.batch.zarrio import as_array
from napari_tiled_unet.core.memory import predict_tiles
from napari_tiled_unet.core.normalize import count_nonfinite, warn_nonfinite
from napari_tiled_unet.core.options import SegmentOptions
from napari_tiled_unet.core.predict import SegmentationResult, normalized_plane
from napari_tiled_unet.core.prepare import prepare, spread_out
from napari_tiled_unet.core.tiling import TilePlan

__all__ = ["segment_lazy"]

#: Planes up to this many pixels are one chunk by default.
WHOLE_PLANE_PIXELS = 4096 * 4096


def _chunk_edges(origins: tuple[int, ...], size: int, target: int, minimum: int) -> list[int]:
    """Chunk sizes along one axis whose edges are tile origins, each about ``target`` px."""
    edges = [0]
    for origin in origins[1:]:
        if origin - edges[-1] >= max(target, minimum):
            edges.append(origin)
    edges.append(size)
    return [b - a for a, b in zip(edges, edges[1:])]


def _reflect_pad(x: Any, axis: int, before: int, after: int) -> Any:
    """Mirror-pad a dask array along ``axis`` like ``np.pad(mode="reflect")`` (any width)."""
    import dask.array as da

    from napari_tiled_unet.core.tiling import reflect_indices

    n = x.shape[axis]
    top = reflect_indices(np.arange(-before, 0), n)
    bottom = reflect_indices(np.arange(n, n + after), n)
    return da.concatenate([da.take(x, top, axis), x, da.take(x, bottom, axis)], axis=axis)


def _block(
    block: np.ndarray,
    *,
    model: Any,
    plan: TilePlan,
    normalizer: Any,
    scales: np.ndarray | None,
    whole: bool,
    runs: tuple[str, tuple[str, ...]] = ("float32", ()),
    block_info: dict[Any, Any] | None = None,
) -> np.ndarray:
    """Probabilities of one output chunk from its mirror-padded, overlapped input block."""
    assert block_info is not None
    location = block_info[None]["array-location"]
    plane = tuple(start for start, _ in location[:-3])
    (y0, y1), (x0, x1) = location[-3], location[-2]
    data = block.reshape(block.shape[-3:])
    unet = _runner(model, runs)
    scale = None
    if whole:  # the whole plane is in the block: same statistics as in memory
        h, w = plan.shape
        core = np.asarray(data[plan.halo : plan.halo + h, plan.halo : plan.halo + w])
        what = f"plane {plane}" if plane else "the image"
        warn_nonfinite(
            count_nonfinite(core), core.size, normalized=normalizer is not None, what=what
        )
    if normalizer is not None:
        if scales is not None:
            scale = (scales[plane][0], scales[plane][1])
        elif whole:
            scale = normalizer.statistics(core)
    if whole and scale is not None:
        data = normalized_plane(data, normalizer, scale)
        scale = None
    out = np.zeros((y1 - y0, x1 - x0, unet.spec.num_classes), np.float32)
    tiles = [
        t for t in plan.tiles() if y0 <= t.output_start[0] < y1 and x0 <= t.output_start[1] < x1
    ]
    h = plan.halo
    for start in range(0, len(tiles), plan.batch_size):
        batch = tiles[start : start + plan.batch_size]
        # The tiles in the block's frame, which starts ``halo`` px before the block's output
        # (predict_tiles retries with smaller calls when memory runs out).
        local = [
            dataclasses.replace(
                t,
                input_start=(t.output_start[0] - y0, t.output_start[1] - x0),
                output_start=(t.output_start[0] - y0 + h, t.output_start[1] - x0 + h),
            )
            for t in batch
        ]
        for t, result in zip(batch, predict_tiles(unet, data, plan, local, scale=scale)):
            (ys, xs), (ly, lx) = t.owned, t.owned_in_tile
            out[ys.start - y0 : ys.stop - y0, xs.start - x0 : xs.stop - x0] = result[ly, lx]
    return out.reshape((1,) * len(plane) + out.shape)


def _runner(model: Any, runs: tuple[str, tuple[str, ...]]) -> Any:
    """Return the model (loaded once per process) in the run's precision and augmentation."""
    if isinstance(model, Held):  # the run's model, in its precision and augmentation
        return model.unet
    precision, tta = runs
    return get_model(model).variant(precision=precision, tta=tta)


class Held:
    """A model handed to the tasks of a graph as one opaque object.

    Dask looks into the arguments of tasks, dataclasses field by field, and would walk the
    model, its Keras graph and its variants (a float32 model and its int8 variant name each
    other: the walk never ends); it does not look into this.  An int8 model's ONNX Runtime
    session lives in this process: its holder cannot be pickled for other processes.
    """

    __slots__ = ("unet",)

    def __init__(self, unet: Any) -> None:
        self.unet = unet

    def __dask_tokenize__(self) -> Any:
        gate = self.unet.int8
        return ("int8", gate.key) if gate is not None else ("model", id(self.unet))

    def __reduce__(self) -> Any:
        if self.unet.precision == "int8":
            raise TypeError(INT8_IN_PROCESS)
        return (Held, (self.unet,))


#: Why int8 tasks cannot go to other processes, and what to do instead.
INT8_IN_PROCESS = (
    "precision int8 runs in this process only (its ONNX Runtime session cannot be sent to "
    "Dask workers); compute with the threaded scheduler (close the Dask client), or use "
    "precision bfloat16"
)


def _task_model(model: Any, job: Any) -> Any:
    """Return what tasks get: a model reference (loaded once per worker) or the model, held."""
    if isinstance(model, ModelRef) and job.unet.precision != "int8":
        return model
    return Held(job.unet)


def _model_token(model: Any, job: Any) -> Any:
    if isinstance(model, ModelRef) and job.unet.precision != "int8":
        return model
    return Held(job.unet).__dask_tokenize__()


def _quantised(job: Any, x: Any, whole: bool, scales: np.ndarray | None) -> Any:
    """Return ``job`` with its int8 model calibrated on up to 3 planes spread over the stack.

    The planes are read and normalised as the tasks will see them (huge planes stay lazy:
    only the calibration tiles are read), before the graph is built.
    """
    from napari_tiled_unet.core.int8 import int8_model
    from napari_tiled_unet.core.sizing import resize

    if job.unet.calibrated:
        return job
    _refuse_distributed()
    sources = []
    for index in spread_out(list(np.ndindex(*job.plane_shape)), 3):
        scale = None if scales is None else (scales[index][0], scales[index][1])
        if not whole and not job.rescale.active:  # tiles are read box by box
            sources.append((x[index], scale if job.normalizer is not None else None))
            continue
        plane = normalized_plane(np.asarray(x[index]), job.normalizer, scale)
        sources.append((resize(plane, job.plan.shape) if job.rescale.active else plane, None))
    return dataclasses.replace(job, unet=int8_model(job.unet, sources, job.plan))


def _refuse_distributed() -> None:
    """One-line ValueError when a Dask distributed client would run the graph elsewhere."""
    import sys

    if "distributed" not in sys.modules:
        return
    from distributed import default_client

    try:
        default_client()
    except ValueError:  # no client: the graph runs in this process
        return
    raise ValueError(INT8_IN_PROCESS)


def _rescaled_block(
    block: np.ndarray,
    *,
    model: Any,
    plan: TilePlan,
    normalizer: Any,
    shape: tuple[int, int],
    scales: np.ndarray | None,
    runs: tuple[str, tuple[str, ...]] = ("float32", ()),
    block_info: Any = None,
) -> np.ndarray:
    """Probabilities of one whole plane, resampled to the model's scale and back."""
    from napari_tiled_unet.core.predict import drain, rescaled_plane

    plane_index = tuple(start for start, _ in block_info[None]["array-location"][:-3])
    data = block.reshape(block.shape[-3:])
    scale = None if scales is None else (scales[plane_index][0], scales[plane_index][1])
    plane = normalized_plane(data, normalizer, scale)
    out = drain(rescaled_plane(_runner(model, runs), plane, plan, shape))
    return out.reshape(block.shape[:-1] + out.shape[-1:])


def _rescaled_lazy(model: Any, unet: Any, job: Any, x: Any, chunks: Any) -> SegmentationResult:
    """Segment lazily images resampled to the model's object size: one task per plane."""
    from dask.base import tokenize

    height, width = job.image_shape
    if (
        chunks is not None
        or max(height * width, int(np.prod(job.plan.shape))) > WHOLE_PLANE_PIXELS
    ):
        raise ValueError(
            "resampling to the model's object size needs whole planes of at most "
            f"{WHOLE_PLANE_PIXELS:,} px; pass object_size='none' or resample the image first"
        )
    n = len(job.plane_shape)
    x = x.rechunk((1,) * n + x.shape[n:])
    scales = None
    if job.normalizer is not None and job.normalizer.per == "stack":
        scales = _scales(x, job.normalizer, per_plane=False)
        scales = np.broadcast_to(scales, (*job.plane_shape, *scales.shape))
    job = _quantised(job, x, True, scales)
    token = _model_token(model, job)
    probs = x.map_blocks(
        _rescaled_block,
        chunks=(1,) * n + (height, width, unet.spec.num_classes),
        dtype=np.float32,
        meta=np.empty((0,) * (n + 3), np.float32),
        name="unet-rescaled-"
        + tokenize(x.name, job.plan, job.normalizer, job.rescale, token, _runs(job)),
        model=_task_model(model, job),
        plan=job.plan,
        normalizer=job.normalizer,
        shape=job.image_shape,
        scales=scales,
        runs=_runs(job),
    )
    probs = probs.transpose([*job.layout.output_order(), probs.ndim - 1])
    names = unet.metadata.class_names
    return SegmentationResult(
        probs, job.layout.output_axes, names, job.plan, job.rescale, job.unet.int8
    )


def _runs(job: Any) -> tuple[str, tuple[str, ...]]:
    """Precision and test-time augmentation of a prepared job (what tasks must run)."""
    return job.unet.precision, job.unet.tta


def _dask_reducer(x: Any) -> Any:
    """Make a percentile reducer over the chunks of a dask array."""
    import dask

    channels = x.shape[-1]

    def reduce(fn: Any) -> np.ndarray:
        def part(block: np.ndarray) -> np.ndarray:
            return fn(np.asarray(block).reshape(-1, channels))

        parts = [dask.delayed(part)(d) for d in x.to_delayed().ravel()]
        return np.sum(dask.compute(*parts), axis=0)

    return reduce


def _scales(x: Any, normalizer: Any, per_plane: bool) -> np.ndarray:
    """Exact percentile statistics ``(*planes, 2, C)`` float64 of a dask ``(*P, Y, X, C)``."""
    from napari_tiled_unet.core.percentile import normalizer_statistics

    planes = x.shape[:-3]
    out = np.zeros((*planes, 2, x.shape[-1]), np.float64)
    groups = list(np.ndindex(*planes)) if per_plane else [()]
    for index in groups:
        data = x[index] if per_plane else x
        out[index] = normalizer_statistics(
            normalizer,
            _dask_reducer(data),
            dtype=data.dtype,
            channels=data.shape[-1],
            count=int(np.prod(data.shape[:-1])),
        )
    return out


def _plane_chunks(plan: TilePlan, alignment: int, chunks: Any) -> tuple[list[int], ...]:
    """Output chunk sizes along Y and X: whole planes, or edges on tile origins."""
    height, width = plan.shape
    if chunks is None and height * width <= WHOLE_PLANE_PIXELS:
        return [height], [width]
    if chunks is None:
        chunks = 4096
    target = (chunks, chunks) if np.isscalar(chunks) else chunks
    # At least one tile and its context: the input that a chunk's last tile reads past the
    # chunk's end (its output may run on into the next chunk, whose tile then owns it) then
    # always lies within the next chunk, as map_overlap requires.
    return tuple(
        _chunk_edges(origins, size, int(t), max(plan.halo + alignment, plan.halo + out))
        for origins, size, t, out in zip(plan.origins, plan.shape, target, plan.tile_out)
    )


def _pad_after(plan: TilePlan, axis: int, alignment: int, sizes: list[int] | None = None) -> int:
    """Context needed past the end of each chunk along ``axis`` (``sizes``; default one chunk).

    The largest of: the mirrored context past the end of the image, and for every chunk
    what its last tile reads past the chunk's end.
    """
    reach = plan.origins[axis][-1] + plan.tile_in[axis] - plan.halo - plan.shape[axis]
    need = max(reach, plan.halo + alignment)
    end = 0
    for size in sizes or [plan.shape[axis]]:
        end += size
        inside = [o for o in plan.origins[axis] if end - size <= o < end]
        if inside:
            need = max(need, inside[-1] + plan.tile_in[axis] - plan.halo - end)
    return need


def _padded(x: Any, halo: int, after: tuple[int, int], chunks: tuple[list[int], ...]) -> Any:
    """Mirror-pad the Y and X axes of ``(*P, Y, X, C)`` and chunk it like the output.

    Chunk ``i`` of the result starts ``halo`` px before output chunk ``i`` (the first and
    last chunks hold the padding), so that ``map_overlap`` hands every output chunk its input
    with the context on all sides.
    """
    n = x.ndim - 3
    padded = _reflect_pad(_reflect_pad(x, n, halo, after[0]), n + 1, halo, after[1])
    sizes = tuple(
        (c[0] + halo + a,) if len(c) == 1 else (c[0] + halo, *c[1:-1], c[-1] + a)
        for c, a in zip(chunks, after)
    )
    return padded.rechunk((1,) * n + sizes + (x.shape[-1],))


def segment_lazy(
    model: Any,
    image: Any,
    options: SegmentOptions | None = None,
    *,
    chunks: int | tuple[int, int] | None = None,
    **keywords: Any,
) -> SegmentationResult:
    """Segment lazily: like :func:`~napari_tiled_unet.segment`, with dask arrays as results.

    Parameters are those of :func:`~napari_tiled_unet.segment`; ``model`` may also be a
    :class:`~napari_tiled_unet.batch.modelref.ModelRef` (a path is turned into one), which
    Dask workers load once each.

    Returns
    -------
    SegmentationResult
        ``.probabilities`` is a float32 dask array chunked by plane (and by ``chunks`` for
        huge planes); ``.labels`` derives from it lazily.
    """
    import dask.array as da
    from dask.base import tokenize

    if isinstance(model, (str, os.PathLike)):
        model = ModelRef.from_path(model)
    unet = get_model(model)
    image = as_array(image)
    if not hasattr(image, "dask") and isinstance(image, np.ndarray):
        image = da.from_array(image, chunks=image.shape)
    job = prepare(unet, image, options, **keywords)
    if not job.unet.calibrated:
        _refuse_distributed()
    x, plan, n = job.canonical, job.plan, len(job.plane_shape)
    if not hasattr(x, "dask"):
        x = da.from_array(x, chunks=(1,) * n + x.shape[n:])
    if job.rescale.active:
        return _rescaled_lazy(model, unet, job, x, chunks)
    alignment = unet.spec.alignment
    ych, xch = _plane_chunks(plan, alignment, chunks)
    whole = len(ych) == 1 and len(xch) == 1
    after = (_pad_after(plan, 0, alignment, ych), _pad_after(plan, 1, alignment, xch))
    padded = _padded(x, plan.halo, after, (ych, xch))
    normalizer = job.normalizer
    scales = None
    if normalizer is not None and (normalizer.per == "stack" or not whole):
        scales = _scales(x, normalizer, per_plane=normalizer.per == "plane")
    if not whole and x.dtype.kind == "f":  # chunks of a plane cannot count for the plane
        bad = int((~da.isfinite(x)).sum().compute())
        warn_nonfinite(bad, int(np.prod(x.shape)), normalized=normalizer is not None)
    job = _quantised(job, x, whole, scales)
    model_token = _model_token(model, job)
    probs = da.map_overlap(
        _block,
        padded,
        depth={n: (plan.halo, after[0]), n + 1: (plan.halo, after[1])},
        boundary="none",
        trim=False,
        allow_rechunk=False,
        chunks=(1,) * n + (tuple(ych), tuple(xch), (unet.spec.num_classes,)),
        dtype=np.float32,
        meta=np.empty((0,) * (n + 3), np.float32),
        name="unet-" + tokenize(padded.name, plan, normalizer, scales, model_token, _runs(job)),
        model=_task_model(model, job),
        plan=plan,
        normalizer=normalizer,
        scales=scales,
        whole=whole,
        runs=_runs(job),
    )
    probs = probs.transpose([*job.layout.output_order(), probs.ndim - 1])
    names = unet.metadata.class_names
    return SegmentationResult(probs, job.layout.output_axes, names, plan, int8=job.unet.int8)
