"""zarr and OME-Zarr: lazy inputs and streamed outputs for :mod:`napari_tiled_unet.batch.lazy`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["open_zarr", "segment_to_zarr"]


def _axes_of(node: Any) -> str | None:
    """Axes letters stored with a zarr array (ours, zarr 3 dimension names or xarray's)."""
    attrs = dict(node.attrs)
    names = attrs.get("axes") or getattr(node.metadata, "dimension_names", None)
    names = names or attrs.get("_ARRAY_DIMENSIONS")
    if not names:
        return None
    text = "".join(str(n)[:1] for n in names) if not isinstance(names, str) else names
    return text.upper() if len(text) == len(node.shape) else None


def open_zarr(path: str | os.PathLike[str]) -> tuple[Any, str | None]:
    """Open a zarr array or an OME-Zarr image lazily.

    Parameters
    ----------
    path : path-like
        A zarr array, or a group with OME-Zarr ``multiscales`` metadata (v0.4 or v0.5),
        whose first (full-resolution) dataset is used.

    Returns
    -------
    array : dask.array.Array
        The data, chunked like the store.
    axes : str or None
        Axes letters from the metadata (e.g. ``"CZYX"``), if any.
    """
    import dask.array as da
    import zarr

    try:
        node = zarr.open(str(path), mode="r")
    except Exception as exc:  # zarr raises several types for "not a store"
        raise ValueError(f"{path} is not a zarr array or OME-Zarr image ({exc})") from exc
    if isinstance(node, zarr.Array):
        return da.from_zarr(node), _axes_of(node)
    attrs: dict[str, Any] = dict(node.attrs)
    scales: Any = attrs.get("ome", attrs).get("multiscales")
    if not scales:
        raise ValueError(
            f"{path} is a zarr group without OME-Zarr 'multiscales' metadata; "
            "pass the path of an array inside it"
        )
    level = scales[0]
    array: Any = node[level["datasets"][0]["path"]]
    names = [a["name"] if isinstance(a, dict) else a for a in level.get("axes", [])]
    axes = "".join(str(a)[:1] for a in names).upper() or None
    return da.from_zarr(array), axes


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
