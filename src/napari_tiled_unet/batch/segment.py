"""The public ``segment``, ``iter_segment`` and ``segment_to_zarr``: the core, plus zarr and dask.

The core reads arrays one plane at a time but knows nothing of zarr or Dask; here a zarr
path or array becomes a dask array first, and ``lazy=True`` hands over to
:func:`napari_tiled_unet.batch.lazy.segment_lazy`.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Generator
from pathlib import Path
from typing import Any

import numpy as np

from napari_tiled_unet.batch.zarrio import as_array, open_zarr
from napari_tiled_unet.core import predict
from napari_tiled_unet.core.options import SegmentOptions
from napari_tiled_unet.core.predict import SegmentationResult, TileProgress

__all__ = ["iter_segment", "segment", "segment_to_zarr"]


@functools.wraps(predict.iter_segment)
def iter_segment(
    model: Any, image: Any, options: SegmentOptions | None = None, **keywords: Any
) -> Generator[TileProgress, None, SegmentationResult]:
    """:func:`napari_tiled_unet.core.predict.iter_segment`, for zarr arrays too."""
    return predict.iter_segment(model, as_array(image), options, **keywords)


def segment(
    model: Any,
    image: Any,
    options: SegmentOptions | None = None,
    *,
    lazy: bool = False,
    chunks: int | tuple[int, int] | None = None,
    **keywords: Any,
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
    image : array-like, dask array, zarr array or path
        Bool, integer or float pixels (normalised, then float32; NaN and infinite pixels
        are left out of the statistics and enter the network as 0, with one
        :class:`~napari_tiled_unet.NonFiniteWarning`).  Lazy arrays (dask,
        zarr) are read one plane (or one tile) at a time.  A path opens a zarr array or
        an OME-Zarr image (its full-resolution level; axes from its metadata unless given).
    options : SegmentOptions, optional
        The options below in one object; keywords given as well replace its fields.
    axes : str, optional
        One letter per dimension, e.g. ``"YX"``, ``"YXC"``, ``"ZYX"``, ``"TZYXC"``.  Axes other
        than Y, X and C are processed plane by plane.  Required unless the image is 2D.
    tile_size : int or (int, int), optional
        Input tile size; invalid sizes are rounded to the nearest valid one with a warning.
        Default: chosen from ``memory_budget``.
    memory_budget : int or str, optional
        Activation memory per network call: bytes or text such as ``"300MB"``, ``"2GB"``,
        ``"1.5GiB"``.  Default: a quarter of the memory available when the run starts
        (between 256 MiB and 8 GiB).  A call that still runs out of memory is retried with
        half the batch, then with smaller tiles, with one warning; the result is the same.
    batch_size : int, optional
        Tiles per network call (default: as many as the budget allows, at most 16).
    normalize : {"auto", "percentile"}, PercentileNormalizer or None
        ``"auto"`` uses the model's stored normalisation (percentile 1 / 99.8 per plane when
        it has none); None feeds the data unchanged (as float32).
    object_size : "auto", "none", float or None
        Typical object diameter of the image in pixels.  The image is resampled so that its
        objects have the size the model was trained at (``model.metadata.object_size``),
        segmented there with the exact overlap-tile engine, and the probabilities are
        resampled back to the image's shape.  ``"auto"`` estimates the size from the image
        (:func:`napari_tiled_unet.core.sizing.estimate_object_size`), ``"none"`` segments the
        image as it is.  None (default): ``"auto"`` for models that record their object
        size, ``"none"`` for the others.  ``result.rescale`` says what was done.
    precision : {"float32", "bfloat16", "float16"}
        Arithmetic of the network's convolutions; the softmax and everything after it stay
        float32.  bfloat16 needs a CPU with ``avx512_bf16``/``amx_bf16`` or a GPU, float16 a
        GPU; elsewhere the run uses float32 with one warning.  Tiling stays exact: the tiled
        result equals one whole-image pass at the same precision.
    tta : bool, str or sequence of str
        Test-time augmentation: average the softmax over the 8 flips and rotations (True or
        ``"all"``), over the identity and the flips (``"flips"``), or over named transforms
        (see :data:`napari_tiled_unet.core.tta.TRANSFORMS`).  Each transform costs one
        network pass (``True``: 8 times the network time).  Tiling stays exact.
    lazy : bool
        Return dask arrays computed on demand, one plane (or one output chunk of a huge
        plane) at a time, instead of numpy arrays; see :mod:`napari_tiled_unet.batch.lazy`.
    chunks : int or (int, int), optional
        With ``lazy``: ``(Y, X)`` output chunk size, rounded to the tile grid (default: whole
        planes up to 4096 x 4096 px).

    Returns
    -------
    SegmentationResult
        ``.probabilities`` (float32, non-channel axes + classes) and ``.labels``.

    Raises
    ------
    TypeError, ValueError
        One line: an unsupported pixel type (e.g. complex), bad axes, options of the wrong
        type or range (``tile_size`` not an integer, ``batch_size < 1``), channels that do
        not fit the model, or an image without any finite pixel.
    """
    opts = SegmentOptions.of(options, **keywords)
    if isinstance(image, (str, os.PathLike)):
        image, file_axes = open_zarr(image)
        opts = opts.replace(axes=opts.axes or file_axes)
    if lazy:  # dask arrays out, one task per plane (or output chunk)
        from napari_tiled_unet.batch.lazy import segment_lazy

        return segment_lazy(model, image, opts, chunks=chunks)
    return predict.segment(model, as_array(image), opts)


def segment_to_zarr(
    model: Any,
    image: Any,
    path: str | os.PathLike[str],
    *,
    probabilities: bool = False,
    probability_dtype: Any = np.float32,
    overwrite: bool = False,
    **options: Any,
) -> Path:
    """Segment lazily and stream the result into a zarr group, chunk by chunk.

    The group holds the array ``labels`` (and ``probabilities``, classes last) and the
    attributes ``axes`` and ``class_names``.

    Parameters
    ----------
    model, image
        As for :func:`segment_lazy`.
    path : path-like
        The zarr group to create.
    probabilities : bool
        Also store the class probabilities.
    probability_dtype : dtype
        float32 or float16.
    overwrite : bool
        Replace an existing group.
    **options
        Any other keyword of :func:`segment_lazy`.

    Returns
    -------
    Path
        ``path``.
    """
    import dask
    import dask.array as da
    import zarr

    from napari_tiled_unet.batch.lazy import segment_lazy

    if Path(path).exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True to replace it")
    result = segment_lazy(model, image, **options)
    root = zarr.open_group(str(path), mode="w")
    arrays = {"labels": result.labels}
    if probabilities:
        arrays["probabilities"] = result.probabilities.astype(probability_dtype)
    writes = []
    for name, array in arrays.items():
        regular = array.rechunk(tuple(max(c) for c in array.chunks))
        target = root.create_array(
            name, shape=array.shape, dtype=array.dtype, chunks=regular.chunksize
        )
        target.attrs["axes"] = result.axes + ("C" if name == "probabilities" else "")
        writes.append(da.store(regular, target, lock=False, compute=False))  # type: ignore[arg-type]
    root.attrs.update(axes=result.axes, class_names=list(result.class_names))
    dask.compute(*writes)
    return Path(path)
