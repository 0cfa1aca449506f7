"""zarr and OME-Zarr inputs, read lazily as dask arrays (outputs: ``segment_to_zarr``)."""

from __future__ import annotations

import os
from typing import Any

__all__ = ["as_array", "open_zarr"]


def as_array(image: Any) -> Any:
    """Return ``image`` with a zarr array turned into a dask array (others unchanged)."""
    if type(image).__module__.split(".")[0] == "zarr" and not hasattr(image, "transpose"):
        import dask.array as da

        return da.from_zarr(image)
    return image


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
